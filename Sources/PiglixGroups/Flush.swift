import PiglixTopics

/// The view change with flush (Birman, "Reliable Distributed Systems"
/// §16.3; Horus's flush with a coordinator-collected union):
///
/// 1. The acting coordinator (oldest unsuspected member) picks a ballot
///    (epoch above any seen, its own id) and proposes the survivors plus the
///    joiners: `flushStart` to each survivor.
/// 2. A survivor that accepts the ballot (not below one it promised) stops
///    sending and delivering in the old view and reports its digest, what it
///    delivered and every message and order entry it still holds.
/// 3. With every survivor's report the coordinator computes one cut (or
///    re-proposes an install a survivor already accepted): per
///    origin the longest prefix some survivor received, shortened before the
///    first message no survivor may deliver (a `total` message the sequencer
///    never ordered, a `safe` message not known stable) and the total order
///    up to the first entry beyond the cut. It proposes it; once a majority
///    of the old view accepted, it sends the same `install` to every member
///    of the new view.
/// 4. Each survivor adds the messages it lacks, delivers exactly to the cut
///    (so all survivors deliver the same set: P3), puts its own messages
///    beyond the cut back in front of its pending queue (they are sent again
///    in the new view: P4, P6), then installs the new view.
///
/// Deviations: one union round instead of Isis's forwarding by each member;
/// `safe` messages not yet stable are re-sent in the next view rather than
/// delivered in a transitional view (Extended Virtual Synchrony), keeping P8
/// strict. Between steps 3 and 4 the install is agreed like a Paxos value
/// (propose, accepted by a majority of the old view, commit), so concurrent
/// coordinators cannot install two different successors of one view.
extension GroupNode {
    mutating func startFlush() {
        guard let log else { return }
        let suspects = member.suspects
        let survivors = log.view.members.filter { !suspects.contains($0) }
        var members = survivors
        for j in incarnation.joiners where !members.contains(where: { $0.node == j.node }) { members.append(j) }
        epochSeen = max(epochSeen, log.view.id.epoch, member.flush.promise?.promised.epoch ?? 0) + 1
        let proposal = ClusterView(id: ViewID(epoch: epochSeen, coordinator: me), members: members)
        for s in survivors where s != me {
            send(s.node, .flushStart(previous: log.view.id, proposal: proposal))
        }
        var flush = CoordinatorFlush(previous: log.view.id, proposal: proposal, survivors: survivors, sentAt: now)
        if !log.view.isMajority(survivors) {
            // Only with restarted nodes voting for their old seats can this
            // flush reach a majority (StandIn.swift).
            for j in incarnation.joiners {
                guard let seat = standInSeat(for: j, in: log.view, suspects: suspects) else { continue }
                flush.standIns[j] = seat
                send(j.node, .flushStart(previous: log.view.id, proposal: proposal))
            }
        }
        // Its own ballot is above anything it promised, so it accepts it.
        acceptFlush(from: me, previous: log.view.id, proposal: proposal, coordinating: flush)
    }

    /// Step 2, at a survivor (`coordinating` is the coordinator's own flush,
    /// when it reports to itself).
    mutating func acceptFlush(from: ProcessID, previous: ViewID, proposal: ClusterView, coordinating started: CoordinatorFlush? = nil) {
        guard let log else { return }
        if previous != log.view.id {
            if let last = lastInstall, last.previous == previous, last.view.contains(from) { send(from.node, .install(last)) }
            return
        }
        epochSeen = max(epochSeen, proposal.id.epoch)
        let earlier = member.flush.promise
        if let p = earlier?.promised, proposal.id < p {
            send(from.node, .flushReject(previous: previous, promised: p))
            return
        }
        guard proposal.contains(me), proposal.id.coordinator == from else { return }
        if let c = member.flush.coordinator, c.proposal.id < proposal.id { member.flush.dropCoordinator() }
        let promise = FlushPromise(promised: proposal.id, frozenDigest: earlier?.frozenDigest ?? log.digest, accepted: earlier?.accepted)
        if let started {
            member.flush = .coordinating(promise, started)
        } else {
            member.flush.setPromise(promise)
        }
        persistAcceptor(AcceptorState(installed: log.view, promised: proposal.id, accepted: earlier?.accepted?.install, acceptedBallot: earlier?.accepted?.ballot))
        // Entries sequenced in this handler must reach members before the
        // report freezes them; the batch is sent at the end of the handler.
        let report = FlushReport(
            previous: log.view.id, ballot: proposal.id, digest: log.digest, knownStable: log.stable,
            messages: log.heldMessages, ordersFirst: log.ordersFloor + 1, orders: log.heldOrders,
            delivered: log.streams.map(\.delivered), floors: log.streams.map(\.floor), totalDelivered: log.totalDelivered,
            accepted: earlier?.accepted?.install, acceptedBallot: earlier?.accepted?.ballot,
            activeGroups: incarnation.local.filter { $0.value.isActive }.keys.sorted { $0.name < $1.name })
        if from == me {
            receiveReport(from: me, report)
        } else {
            send(from.node, .flushReport(report))
        }
    }

    mutating func receiveReport(from: ProcessID, _ report: FlushReport) {
        guard var c = coordinator, report.ballot == c.proposal.id, c.survivors.contains(from), c.value == nil else { return }
        c.reports[from] = report
        member.flush.setCoordinator(c)
        proposeIfReady(c)
    }

    /// Phase 2 (Paxos, Lamport 2001, with the install as the value): a value
    /// some survivor already accepted may have been committed by a failed
    /// coordinator, so the one under the highest ballot is proposed again
    /// unchanged; otherwise the cut computed from the reports.
    mutating func propose(_ c: CoordinatorFlush) {
        var c = c
        var best: (ViewID, Install)?
        for s in c.survivors {
            if let r = c.reports[s], let a = r.accepted, let b = r.acceptedBallot, best == nil || b > best!.0 { best = (b, a) }
        }
        for p in c.standInPromises.values {
            if let a = p.accepted, let b = p.acceptedBallot, best == nil || b > best!.0 { best = (b, a) }
        }
        let value = best?.1 ?? Self.computeInstall(c, view: vlog.view)
        c.value = value
        member.flush.setCoordinator(c)
        for s in c.survivors where s != me { send(s.node, .propose(ballot: c.proposal.id, value)) }
        for j in c.standInPromises.keys { send(j.node, .propose(ballot: c.proposal.id, value)) }
        receivePropose(from: me, ballot: c.proposal.id, value)
    }

    mutating func receivePropose(from: ProcessID, ballot: ViewID, _ value: Install) {
        guard let log, value.previous == log.view.id, var promise = member.flush.promise else { return }
        if ballot < promise.promised {
            send(from.node, .flushReject(previous: log.view.id, promised: promise.promised))
            return
        }
        promise.promised = ballot
        promise.accepted = (ballot, value)
        member.flush.setPromise(promise)
        persistAcceptor(AcceptorState(installed: log.view, promised: ballot, accepted: value, acceptedBallot: ballot))
        if from == me {
            receiveAccepted(from: me, ballot: ballot)
        } else {
            send(from.node, .accepted(ballot: ballot))
        }
    }

    mutating func receiveAccepted(from: ProcessID, ballot: ViewID) {
        guard var c = coordinator, c.proposal.id == ballot, let value = c.value, let log else { return }
        guard log.view.contains(from) || c.standInPromises[from] != nil else { return }
        c.accepts.insert(from)
        member.flush.setCoordinator(c)
        guard log.view.isMajority(c.acceptedSeats(in: log.view)) else { return }
        // Commit.
        var inst = value
        if inst.view.contains(me) {
            // A value computed from, or adopted out of, a report that lied
            // (an authenticated but faulty peer) may be a cut this process
            // cannot deliver: it leaves the view instead of trapping.
            guard canReach(inst), !claimsOwnMessages(inst.messages), deliverToCut(inst) else {
                reject(me, .unreachableCut)
                return rejoin()
            }
            inst.groups = incarnation.groups.records
            installView(inst, announce: true)
        } else {
            // Not in the value: it cannot know the group table at the cut,
            // so only the survivors get the install; joiners get it from
            // them (their join requests are answered with the last install).
            for p in inst.view.members where log.view.contains(p) { send(p.node, .install(inst)) }
            rejoin()
        }
    }

    mutating func receiveInstall(_ inst: Install) {
        switch phase {
        case .joining:
            if inst.view.contains(me) { adoptAsJoiner(inst) }
        case .member:
            guard let view = log?.view, inst.previous == view.id else { return }
            guard inst.view.contains(me) else {
                // The view was closed without this process: it was excluded.
                rejoin()
                return
            }
            // Listed as a survivor means this process reported to that
            // ballot, so the cut accounts for everything it delivered; it is
            // applied even if a higher ballot was promised since (see the
            // deviations above).
            guard flushing else { return }
            var inst = inst
            guard deliverToCut(inst) else {
                reject(me, .unreachableCut)
                return rejoin()
            }
            // Every survivor holds the same group table at the cut; keep it
            // in the install it may forward to a joiner later.
            inst.groups = incarnation.groups.records
            installView(inst, announce: false)
        case .idle, .left, .modifying:
            return
        }
    }

    /// Step 4: complete the old view exactly to the cut.
    /// False when delivery stopped short of the cut (only a faulty peer's
    /// install can do that; `rejection(install:)` refuses the ones it can
    /// tell before any delivery): the caller leaves the view.
    @discardableResult
    mutating func deliverToCut(_ inst: Install) -> Bool {
        for m in inst.messages {
            let r = Int(m.id.origin)
            if m.id.seq == vlog.streams[r].received + 1 { vlog.streams[r].append(m) }
        }
        for (i, e) in inst.orders.enumerated() where inst.ordersFirst + UInt64(i) == vlog.ordersKnown + 1 {
            vlog.appendEntry(e)
        }
        for r in inst.cut.indices {
            precondition(
                vlog.streams[r].received >= inst.cut[r] && vlog.streams[r].delivered <= inst.cut[r],
                "\(me) cannot reach cut \(inst.cut) of \(inst.view): origin \(r) received \(vlog.streams[r].received) delivered \(vlog.streams[r].delivered)")
        }
        precondition(vlog.ordersKnown >= inst.ordersCut && vlog.totalDelivered <= inst.ordersCut, "\(me) cannot reach orders cut \(inst.ordersCut): known \(vlog.ordersKnown) delivered \(vlog.totalDelivered)")
        vlog.limit = (inst.cut, inst.ordersCut)
        // Deliver to the cut; the install that follows starts a new `Member`.
        member.flush = .none
        deliver(hint: nil)
        for r in inst.cut.indices where vlog.streams[r].delivered != inst.cut[r] { return false }
        if vlog.totalDelivered != inst.ordersCut { return false }
        for mark in inst.readyAtCut { incarnation.groups.setReady(mark.pattern, mark.member) }
        // Own messages beyond the cut are sent again in the next view.
        let rank = vlog.myRank
        var resend: [PendingPublish] = []
        var s = inst.cut[rank] + 1
        while s <= vlog.streams[rank].received {
            let m = vlog.streams[rank].message(s)!
            let f = inflight.removeFirst()
            precondition(f.seq == s, "inflight \(f.seq) does not match own message \(s)")
            resend.append(PendingPublish(token: f.token, id: m.publish, session: m.session, level: m.level, kind: m.kind, payload: m.payload))
            pendingBytes += m.payload.count
            s += 1
        }
        precondition(inflight.isEmpty, "inflight left after the cut: \(inflight.count)")
        // Messages a checkpoint cut covers but the flush cut leaves out.
        for (p, cut) in incarnation.cuts.sorted(by: { $0.key.name < $1.key.name }) where cut.view == vlog.view.id {
            var beyond: [PublishID] = []
            var phantoms: [MessageID] = []
            for r in inst.cut.indices {
                var s = inst.cut[r] + 1
                while s <= min(cut.delivered[r], vlog.streams[r].received) {
                    if let m = vlog.streams[r].message(s) {
                        beyond.append(m.publish)
                        if !inst.view.contains(m.publish.origin) { phantoms.append(m.id) }
                    }
                    s += 1
                }
            }
            guard !beyond.isEmpty else { continue }
            if p == settings.prerequisiteGroup, !phantoms.isEmpty { out.append(.forgetDeliveries(p, phantoms)) }
            // The skip list is right only for a group whose state is a set
            // and for messages whose origin survives to send them again: an
            // excluded origin's message is in this state and in no
            // survivor's (seed 900568). The prerequisite group (the
            // idempotence table, on which the other groups' deliveries are
            // decided) keeps its state and forgets those messages instead
            // (seed 1202328).
            let orphaned = beyond.contains { !inst.view.contains($0.origin) } && p != settings.prerequisiteGroup
            if settings.orderedStateGroups.contains(p) || orphaned, takeStateAgain(p, survivors: inst.view) { continue }
            incarnation.skip[p, default: []].formUnion(beyond)
        }
        if !resend.isEmpty { pending.prepend(contentsOf: resend) }
        return true
    }

    /// A group whose checkpoint holds messages the flush cut (an
    /// ordered-state group, or one holding a message no survivor will send
    /// again): if a survivor other than this member is ready, the state is
    /// taken again from one, buffering from this point (the flush cut); the
    /// install that follows asks for it. False: keep the state and skip the
    /// re-sends (nobody else holds the history).
    mutating func takeStateAgain(_ p: TopicPattern, survivors: ClusterView) -> Bool {
        guard let log, incarnation.local[p]?.isActive ?? false, let record = incarnation.groups.record(p) else { return false }
        let provider = record.members.indices.contains { i in
            record.members[i] != me && record.ready[i] && survivors.contains(record.members[i])
        }
        guard provider else { return false }
        var t = Transfer()
        t.after = log.position
        t.again = true
        incarnation.local[p] = .awaiting(t)
        incarnation.trie.remove(p, p)
        incarnation.transferring.append(p)
        incarnation.cuts[p] = nil
        incarnation.skip[p] = nil
        out.append(.transferRestarted(p))
        return true
    }

    mutating func adoptAsJoiner(_ inst: Install) {
        // The rest of the incarnation is still new: nothing joins a group
        // or serves a checkpoint before the first install.
        incarnation.groups = GroupTable(records: inst.groups)
        installView(inst, announce: inst.previous != nil && inst.view.coordinator == me)
    }

    /// Installs `inst`: a new `Member` replaces the old view's state.
    mutating func installView(_ inst: Install, announce: Bool) {
        persistAcceptor(AcceptorState(installed: inst.view))
        vlog = ViewLog(view: inst.view, me: me)
        vlog.heardAt = Array(repeating: now, count: inst.view.members.count)
        phase = .member(MemberBox(Member(install: inst, now: now)))
        incarnation.joiners.removeAll { j in inst.view.members.contains { $0.node == j.node } }
        epochSeen = max(epochSeen, inst.view.id.epoch)
        incarnation.cuts = incarnation.cuts.filter { $0.value.view >= inst.view.id }
        if !incarnation.skip.isEmpty {
            skipAge += 1
            if skipAge > 2 {
                incarnation.skip = [:]
                skipAge = 0
            }
        }
        if announce {
            for p in inst.view.members where p != me { send(p.node, .install(inst)) }
        }
        out.append(.installClusterView(inst.view))
        incarnation.groups.beginView(epoch: inst.view.id.epoch)
        incarnation.groups.removeDeparted(keeping: inst.view)
        for p in incarnation.local.keys.sorted(by: { $0.name < $1.name }) { announceGroup(p) }
        for p in wanted.sorted(by: { $0.name < $1.name }) where incarnation.local[p] == nil { joinGroup(p) }
        for p in incarnation.transferring { evaluateTransfer(p, force: true) }
        incarnation.deferred.removeAll { !inst.view.contains($0.joiner) }
        if !incarnation.future.isEmpty {
            let kept = Array(incarnation.future.elements)
            incarnation.future.removeAll()
            for (from, msg) in kept { receive(from: from, msg) }
        }
        drainPending()
        evaluateMembership()
    }
}
