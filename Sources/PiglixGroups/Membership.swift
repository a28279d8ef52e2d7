import PiglixTopics

/// Membership: joining through seeds, heartbeats, suspicion, routing of the
/// protocol messages, stale and future views, and rejoining as a new
/// incarnation (Isis: a process declared failed never returns under its old
/// name). Heartbeats go to every member (simple and fast to detect; the
/// per-multicast cost stays linear because acks and stability go through the
/// coordinator). Deviation from SWIM-style probing: no indirect probes.
extension GroupNode {
    mutating func start(seeds: [NodeID], bootstrap: Bool) {
        // Keep seeds added before the start: the shell learns them as
        // connections come up, and one can come up between the listen and
        // the start (a node that lost them never asked that peer to join).
        for seed in seeds where seed != me.node && !self.seeds.contains(seed) { self.seeds.append(seed) }
        if bootstrap {
            let v = ClusterView(id: ViewID(epoch: 1, coordinator: me), members: [me])
            let inst = Install(previous: nil, view: v, cut: [], ordersCut: 0, messages: [], ordersFirst: 1, orders: [], groups: [])
            adoptAsJoiner(inst)
        } else {
            phase = .joining
            nextJoinAt = now
        }
        tick()
    }

    mutating func tick() {
        switch phase {
        case .joining:
            if now >= nextJoinAt {
                nextJoinAt = now + settings.joinRetryTicks
                for s in seeds { send(s, .joinRequest(me)) }
            }
        case .member:
            memberTick()
        case .idle, .left, .modifying:
            return
        }
        out.append(.setTimer(at: now + settings.heartbeatIntervalTicks))
    }

    mutating func memberTick() {
        guard let view = log?.view else { return }
        if vlog.isSequencer && !flushing && vlog.recomputeStable() {
            deliver(hint: nil)
        }
        if now >= member.nextHeartbeatAt {
            member.nextHeartbeatAt = now + settings.heartbeatIntervalTicks
            let hb = ProtocolMessage.heartbeat(view: view.id, digest: claimedDigest, stable: vlog.isSequencer ? vlog.stable : nil)
            broadcast(hb)
        }
        for (r, p) in view.members.enumerated() where p != me && !member.suspects.contains(p) {
            if now > vlog.heardAt[r] + settings.suspicionTimeoutTicks { member.suspects.insert(p) }
        }
        evaluateMembership()
        if var c = coordinator, now >= c.sentAt + settings.flushRetryTicks {
            c.sentAt = now
            member.flush.setCoordinator(c)
            for s in c.survivors where s != me {
                if let value = c.value {
                    if !c.accepts.contains(s) { send(s.node, .propose(ballot: c.proposal.id, value)) }
                } else if c.reports[s] == nil {
                    send(s.node, .flushStart(previous: c.previous, proposal: c.proposal))
                }
            }
            for j in c.standIns.keys {
                if let value = c.value {
                    if c.standInPromises[j] != nil && !c.accepts.contains(j) { send(j.node, .propose(ballot: c.proposal.id, value)) }
                } else if c.standInPromises[j] == nil {
                    send(j.node, .flushStart(previous: c.previous, proposal: c.proposal))
                }
            }
        }
        for p in incarnation.transferring { evaluateTransfer(p, force: false) }
        expireTickets()
        drainPending()
        // Tell seeds outside the view which view this is, so two components
        // that cannot otherwise hear of each other merge: the one with the
        // older view rejoins the newer (liveness, P9).
        if now >= nextJoinAt {
            nextJoinAt = now + settings.joinRetryTicks
            for s in seeds where !view.members.contains(where: { $0.node == s }) { send(s, .viewNotice(view)) }
        }
    }

    /// The oldest member not suspected here.
    var actingCoordinator: ProcessID? {
        guard case .member(let box) = phase else { return nil }
        let suspects = box.value.suspects
        return vlog.view.members.first { !suspects.contains($0) }
    }

    /// Primary-component rule, then: the acting coordinator starts a view
    /// change when a member is suspected or a process asks to join.
    mutating func evaluateMembership() {
        guard let view = log?.view else { return }
        let suspects = member.suspects
        let alive = view.members.filter { !suspects.contains($0) }
        if !view.isMajority(alive) {
            if !member.blocked {
                member.blocked = true
                out.append(.primaryLost(lastView: view.id))
            }
            // Restarted nodes may vote for their old seats (StandIn.swift).
            let standIns = incarnation.joiners.filter { standInSeat(for: $0, in: view, suspects: suspects) != nil }
            guard alive.first == me, !standIns.isEmpty else { return }
            let seats = alive + standIns.compactMap { standInSeat(for: $0, in: view, suspects: suspects) }
            guard view.isMajority(seats) else { return }
            if let c = coordinator {
                if c.survivors.contains(where: { suspects.contains($0) }) || c.survivors != alive || !Set(standIns).isSubset(of: c.standIns.keys) {
                    startFlush()
                }
                return
            }
            startFlush()
            return
        }
        member.blocked = false
        guard alive.first == me else { return }
        if let c = coordinator {
            // Start over when a survivor became suspect, or when the flush
            // began with a minority (a rejected ballot restarts it with the
            // suspects of that moment) and enough members are back: a
            // minority of survivors can never commit (seed 1401).
            if c.survivors.contains(where: { suspects.contains($0) }) || !view.isMajority(c.survivors) { startFlush() }
            return
        }
        if !suspects.isEmpty || !incarnation.joiners.isEmpty { startFlush() }
    }

    // MARK: Message routing

    mutating func receive(from: ProcessID, _ msg: ProtocolMessage) {
        switch msg {
        case .data(let m):
            guard current(m.id.view, from, msg) else { return }
            receiveData(from: from, m)
        case .order(let v, let first, let entries):
            guard current(v, from, msg), from == vlog.view.coordinator else { return }
            if let reason = rejection(orderFirst: first, entries) { return reject(from, reason) }
            receiveOrders(first: first, entries)
        case .ack(let v, let d):
            guard current(v, from, msg), vlog.isSequencer, !flushing, let r = vlog.view.rank(of: from) else { return }
            if vlog.recordDigest(d, of: r) {
                member.stableDirty = true
                deliver(hint: nil)
                drainPending()
            }
        case .stable(let v, let d):
            guard current(v, from, msg), from == vlog.view.coordinator else { return }
            if vlog.adoptStable(d) {
                deliver(hint: nil)
                drainPending()
            }
        case .heartbeat(let v, let d, let st):
            guard current(v, from, msg) else { return }
            if let st, st.received.count != vlog.streams.count { return reject(from, .vectorLength) }
            receiveHeartbeat(from: from, d, st)
        case .nak(let v, let first):
            guard current(v, from, msg) else { return }
            let own = vlog.streams[vlog.myRank]
            var s = max(first, own.floor + 1)
            while s <= own.received {
                if let m = own.message(s) { send(from.node, .data(m)) }
                s += 1
            }
        case .orderNak(let v, let first):
            guard current(v, from, msg), vlog.isSequencer else { return }
            var entries: [OrderEntry] = []
            let start = max(first, vlog.ordersFloor + 1)
            var g = start
            while g <= vlog.ordersKnown {
                entries.append(vlog.entry(g)!)
                g += 1
            }
            if !entries.isEmpty { send(from.node, .order(view: v, first: start, entries: entries)) }
        case .joinRequest(let p):
            receiveJoinRequest(p)
        case .flushStart(let previous, let proposal):
            if case .joining = phase { return standInFlush(from: from, previous: previous, proposal: proposal) }
            acceptFlush(from: from, previous: previous, proposal: proposal)
        case .flushReject(let previous, let p):
            guard let c = coordinator, c.previous == previous, c.proposal.id < p else { return }
            epochSeen = max(epochSeen, p.epoch)
            startFlush()
        case .propose(let ballot, let value):
            if case .joining = phase { return standInPropose(from: from, ballot: ballot, value) }
            if let reason = rejection(install: value) { return reject(from, reason) }
            receivePropose(from: from, ballot: ballot, value)
        case .accepted(let ballot):
            receiveAccepted(from: from, ballot: ballot)
        case .standInPromise(let previous, let ballot, let accepted, let acceptedBallot):
            guard inView, previous == vlog.view.id else { return }
            if let accepted, let reason = Self.check(accepted, members: vlog.view.members.count) { return reject(from, reason) }
            receiveStandInPromise(from: from, ballot: ballot, accepted: accepted, acceptedBallot: acceptedBallot)
        case .flushReport(let r):
            if let reason = rejection(report: r) { return reject(from, reason) }
            receiveReport(from: from, r)
        case .install(let inst):
            if let reason = rejection(install: inst) { return reject(from, reason) }
            receiveInstall(inst)
        case .installRequest(let v):
            if let last = lastInstall, last.previous == v, last.view.contains(from) {
                send(from.node, .install(last))
            } else if let view = currentView, v < view.id {
                send(from.node, .viewNotice(view))
            }
        case .viewNotice(let v):
            guard let mine = log?.view else { return }
            if v.id > mine.id && !v.contains(me) {
                rejoin()
            } else if v.id > mine.id && !flushing {
                // A newer view lists this process but it never took part in
                // the change that made it (another lineage): start over.
                rejoin()
            } else if v.id < mine.id && !mine.contains(from) {
                staleSender(from, v.id)
            }
        case .checkpointRequest(let p, let after, let request):
            if let reason = rejection(position: after) { return reject(from, reason) }
            checkpointRequested(from: from, pattern: p, after: after, request: request)
        case .checkpointChunk(let chunk):
            if let cut = chunk.cut, let reason = rejection(position: cut) { return reject(from, reason) }
            checkpointChunkReceived(from: from, chunk)
        case .checkpointAck(let p, let request, let index):
            checkpointAcked(from: from, pattern: p, request: request, index: index)
        }
    }

    /// True when `v` is the current view and `from` is in it. Messages of a
    /// later view are kept for after its install (bounded); a sender in an
    /// older view is told about the current one.
    mutating func current(_ v: ViewID, _ from: ProcessID, _ msg: ProtocolMessage) -> Bool {
        switch phase {
        case .member:
            if v == vlog.view.id {
                guard let r = vlog.view.rank(of: from) else { return false }
                vlog.heardAt[r] = now
                if !member.suspects.isEmpty { member.suspects.remove(from) }
                return true
            }
            let view = vlog.view
            if v < view.id {
                staleSender(from, v)
                return false
            }
            if case .heartbeat = msg {
                // A member of a newer view: ask it for the install I missed.
                if now >= (noticeSentAt[from.node] ?? 0) {
                    noticeSentAt[from.node] = now + settings.heartbeatIntervalTicks
                    send(from.node, .installRequest(view: view.id))
                }
                return false
            }
            keepForLater(from, msg)
            return false
        case .joining:
            if case .heartbeat = msg { return false }
            keepForLater(from, msg)
            return false
        case .idle, .left, .modifying:
            return false
        }
    }

    mutating func keepForLater(_ from: ProcessID, _ msg: ProtocolMessage) {
        if incarnation.future.count < settings.futureMessagesMax { incarnation.future.append((from, msg)) }
    }

    mutating func staleSender(_ from: ProcessID, _ v: ViewID) {
        guard let view = log?.view, now >= (noticeSentAt[from.node] ?? 0) else { return }
        noticeSentAt[from.node] = now + settings.heartbeatIntervalTicks
        if let last = lastInstall, last.previous == v, last.view.contains(from) {
            send(from.node, .install(last))
        } else {
            send(from.node, .viewNotice(view))
        }
    }

    mutating func receiveData(from: ProcessID, _ m: DataMessage) {
        let r = Int(m.id.origin)
        guard r < vlog.streams.count, vlog.view.members[r] == from else { return }
        let received = vlog.streams[r].received
        if m.id.seq == received + 1 {
            vlog.streams[r].append(m)
            receivedSinceAck += 1
            if receivedSinceAck >= settings.ackEveryMessages { member.ackDirty = true }
            if m.level.isTotallyOrdered {
                if vlog.isSequencer && !flushing { sequence(origin: r, seq: m.id.seq) }
                if m.level.needsStability { member.ackDirty = true }
            }
            deliver(hint: r)
        } else if m.id.seq > received + 1 {
            nak(r)
        }
    }

    mutating func receiveOrders(first: UInt64, _ entries: [OrderEntry]) {
        if first > vlog.ordersKnown + 1 {
            orderNak()
            return
        }
        for (i, e) in entries.enumerated() where first + UInt64(i) == vlog.ordersKnown + 1 {
            vlog.appendEntry(e)
        }
        deliver(hint: nil)
    }

    mutating func receiveHeartbeat(from: ProcessID, _ digest: Digest, _ stable: Digest?) {
        guard let r = vlog.view.rank(of: from), digest.received.count == vlog.streams.count else { return }
        if vlog.isSequencer && !flushing && vlog.recordDigest(digest, of: r) {
            deliver(hint: nil)
        }
        if let stable, r == 0, vlog.adoptStable(stable) {
            deliver(hint: nil)
        }
        if digest.received[r] > vlog.streams[r].received { nak(r) }
        if r == 0 && digest.ordersKnown > vlog.ordersKnown { orderNak() }
        drainPending()
    }

    /// Asks origin `r` to resend its stream from the first missing message
    /// (its link was cut and restored without a view change).
    mutating func nak(_ r: Int) {
        guard !vlog.hasNakked[r] || now >= vlog.nakAt[r] + settings.nakRetryTicks else { return }
        vlog.hasNakked[r] = true
        vlog.nakAt[r] = now
        send(vlog.view.members[r].node, .nak(view: vlog.view.id, from: vlog.streams[r].received + 1))
    }

    mutating func orderNak() {
        guard !vlog.hasOrderNakked || now >= vlog.orderNakAt + settings.nakRetryTicks else { return }
        vlog.hasOrderNakked = true
        vlog.orderNakAt = now
        send(vlog.view.coordinator.node, .orderNak(view: vlog.view.id, from: vlog.ordersKnown + 1))
    }

    mutating func receiveJoinRequest(_ p: ProcessID) {
        guard let view = log?.view else { return }
        if view.contains(p) {
            send(p.node, .install(member.install))
            return
        }
        if view.members.contains(where: { $0.node == p.node && $0.incarnation > p.incarnation }) { return }
        // An older incarnation of the same node has crashed (the node
        // restarted): any member may suspect it at once, so a restarted
        // coordinator does not hold its own rejoin up for a suspicion timeout.
        for m in view.members where m.node == p.node && m.incarnation < p.incarnation && m != me { member.suspects.insert(m) }
        guard let acting = actingCoordinator else { return }
        if acting != me {
            send(acting.node, .joinRequest(p))
            return
        }
        if !incarnation.joiners.contains(p) {
            incarnation.joiners.removeAll { $0.node == p.node }
            incarnation.joiners.append(p)
        }
        evaluateMembership()
    }

    /// Excluded from the primary view: start over as a new incarnation.
    /// Everything of the view (`Member`) and of the incarnation
    /// (`Incarnation`) goes; publishes in flight fail.
    mutating func rejoin() {
        failAllPublishes(.lostPrimary)
        let lastMembers = log?.view.members.map(\.node) ?? []
        me = ProcessID(node: me.node, incarnation: me.incarnation + 1)
        out.append(.rejoining(as: me))
        phase = .joining
        incarnation = Incarnation(settings: settings)
        for n in lastMembers where n != me.node && !seeds.contains(n) { seeds.append(n) }
        nextJoinAt = now
        tick()
    }
}
