import PiglixTopics

/// A publish accepted but not sent yet: held during a flush (docs/virtual-synchrony.md,
/// "Membership and the view change with flush") or while the unstable window is full.
struct PendingPublish: Sendable {
    var token: UInt64?
    var id: PublishID
    var session: UInt64
    var level: DeliveryLevel
    var kind: DataKind
    var payload: [UInt8]
}

/// An own message sent in the current view, acknowledged when delivered here.
struct InflightPublish: Sendable {
    var seq: UInt64
    var token: UInt64?
    var id: PublishID
    var level: DeliveryLevel
}

extension GroupNode {
    mutating func publish(_ r: PublishRequest) {
        guard isInPrimary else {
            out.append(.publishRefused(token: r.token, .notInPrimary))
            return
        }
        guard pending.count < settings.pendingPublishesMax, pendingBytes + r.payload.count <= settings.pendingBytesMax
            || (pending.isEmpty && canSend)
        else {
            out.append(.publishRefused(token: r.token, .pendingFull(messages: pending.count, bytes: pendingBytes)))
            return
        }
        publishSeq += 1
        let p = PendingPublish(
            token: r.token, id: PublishID(origin: me, seq: publishSeq), session: r.session, level: r.level,
            kind: .publish(r.destination), payload: r.payload)
        submit(p)
    }

    /// Group joins, leaves and readiness are ordered like `total` messages
    /// from this process; they are never refused.
    mutating func publishControl(_ kind: DataKind) {
        publishSeq += 1
        submit(PendingPublish(token: nil, id: PublishID(origin: me, seq: publishSeq), session: 0, level: .total, kind: kind, payload: []))
    }

    @inline(__always)
    mutating func submit(_ p: PendingPublish) {
        if pending.isEmpty && canSend {
            sendNow(p)
        } else {
            pending.append(p)
            pendingBytes += p.payload.count
        }
    }

    /// Flow control: no sending during a flush, in a minority, or while own
    /// unstable messages exceed the window.
    var canSend: Bool {
        guard case .member(let box) = phase, !box.value.blocked, !box.value.flush.isFlushing else { return false }
        return vlog.ownUnstableCount < settings.unstableMessagesMax && vlog.ownUnstableBytes < settings.unstableBytesMax
    }

    mutating func drainPending() {
        while !pending.isEmpty && canSend {
            let p = pending.removeFirst()
            pendingBytes -= p.payload.count
            sendNow(p)
        }
    }

    mutating func sendNow(_ p: PendingPublish) {
        let rank = vlog.myRank
        let seq = vlog.streams[rank].received + 1
        let m = DataMessage(
            id: MessageID(view: vlog.view.id, origin: UInt32(rank), seq: seq), publish: p.id, session: p.session,
            level: p.level, kind: p.kind, payload: p.payload)
        vlog.appendOwn(m)
        inflight.append(InflightPublish(seq: seq, token: p.token, id: p.id, level: p.level))
        if case .groupJoin(let pattern) = p.kind { markJoinSent(pattern) }
        let data = ProtocolMessage.data(m)
        for (r, q) in vlog.view.members.enumerated() where r != rank { out.append(.send(to: q.node, data)) }
        if vlog.isSequencer && p.level.isTotallyOrdered { sequence(origin: rank, seq: seq) }
        deliver(hint: rank)
    }

    /// Sequencer: give the message the next slot of the total order; the
    /// entries of one handler go out as one `.order` message.
    mutating func sequence(origin: Int, seq: UInt64) {
        let entry = OrderEntry(origin: UInt32(origin), seq: seq)
        member.batch(entry, index: vlog.ordersKnown + 1)
        vlog.appendEntry(entry)
    }

    /// Runs the delivery rule and hands out what it releases.
    /// Not reentrant: a delivery that causes a send (a group join completing
    /// a transfer multicasts `groupReady`) asks for another pass instead.
    mutating func deliver(hint: Int?) {
        guard inView, !flushing else { return }
        if delivering {
            redeliver = true
            return
        }
        delivering = true
        var batch: [DataMessage] = []
        swap(&batch, &scratch)
        var h = hint
        repeat {
            redeliver = false
            vlog.deliverReady(hint: h, into: &batch)
            for m in batch { delivered(m) }
            batch.removeAll(keepingCapacity: true)
            h = nil
        } while redeliver && inView && !flushing
        swap(&batch, &scratch)
        delivering = false
    }

    @inline(__always)
    mutating func delivered(_ m: DataMessage) {
        // The ack follows the message's own delivery effect, so a shell that
        // tracks its delivery position sees the message before its ack.
        var ack: GroupEffect?
        if Int(m.id.origin) == vlog.myRank {
            let f = inflight.removeFirst()
            precondition(f.seq == m.id.seq, "own delivery \(m.id) but inflight head is \(f.seq)")
            if let t = f.token { ack = .publishAcked(token: t, id: f.id, level: f.level) }
        }
        defer { if let ack { out.append(ack) } }
        switch m.kind {
        case .publish(let dest):
            deliverPublish(m, dest, view: vlog.view.id)
        case .groupJoin(let p):
            groupJoined(p, by: vlog.view.members[Int(m.id.origin)])
        case .groupLeave(let p):
            groupLeft(p, by: vlog.view.members[Int(m.id.origin)])
        case .groupReady(let p):
            groupReadied(p, by: vlog.view.members[Int(m.id.origin)])
        }
    }

    mutating func failAllPublishes(_ why: PublishFailure) {
        while !inflight.isEmpty {
            let f = inflight.removeFirst()
            if let t = f.token { out.append(.publishFailed(token: t, id: f.id, why)) }
        }
        while !pending.isEmpty {
            let p = pending.removeFirst()
            if let t = p.token { out.append(.publishFailed(token: t, id: p.id, why)) }
        }
        pendingBytes = 0
    }
}
