import PiglixTopics

/// State transfer on group join (P10), after Isis's `join with state
/// transfer` (Birman & Joseph 1987 §5) with a consistent cut:
///
/// 1. The joiner J records its delivery position `after` when its join is
///    sent and from then on buffers every delivery for the pattern.
/// 2. When the join is delivered (total order), J asks the oldest member
///    that is *ready* (has completed its own transfer) for a checkpoint
///    at or after `after`.
/// 3. The provider waits until its own position covers `after`, then asks
///    its application to snapshot the group state right away; the position
///    at that moment is the cut.
/// 4. J applies the checkpoint, then delivers its buffered messages the cut
///    does not cover, then goes live and multicasts `groupReady`.
///
/// Checkpoint + later deliveries = the provider's state, because J buffered
/// from a position at or before the cut. If no member is ready (the group is
/// new, or every member holding its history is gone), the oldest awaiting
/// member starts from an empty state and the others wait for it.
/// Deviation: positions are per view, so a cut in an older view than a
/// buffered message always excludes it; this relies on P3.
struct Transfer: Sendable {
    var after: StreamPosition?
    var buffer: [DataMessage] = []
    var provider: ProcessID?
    var requestedAt: Tick = 0
}

struct Ticket: Sendable {
    var joiner: ProcessID
    var pattern: TopicPattern
    var cut: StreamPosition
    /// The provider's re-sends to skip for the pattern at the cut.
    var skip: [PublishID]
}

extension GroupNode {
    mutating func markJoinSent(_ p: TopicPattern) {
        guard case .joining(var t) = incarnation.local[p], t.after == nil, let log else { return }
        t.after = log.position
        incarnation.local[p] = .joining(t)
    }

    mutating func bufferForTransfers(_ m: DataMessage, _ dest: Destination) {
        for p in incarnation.transferring where Self.matches(dest, p) {
            // Taken out of the dictionary first so the buffer is uniquely
            // referenced and appends do not copy it.
            switch incarnation.local.removeValue(forKey: p) {
            case .joining(var t):
                t.buffer.append(m)
                incarnation.local[p] = .joining(t)
            case .awaiting(var t):
                if t.buffer.count >= settings.transferBufferMax {
                    // Too far behind: start the transfer over from here.
                    t.buffer.removeAll()
                    t.after = log?.position
                    t.provider = nil
                }
                t.buffer.append(m)
                incarnation.local[p] = .awaiting(t)
            case .active:
                incarnation.local[p] = .active
            case nil:
                break
            }
        }
    }

    /// Picks a provider and (re)sends the request, or starts empty when the
    /// group has no ready member and this node is its oldest member.
    mutating func evaluateTransfer(_ p: TopicPattern, force: Bool) {
        guard case .awaiting(var t) = incarnation.local[p], let after = t.after, let record = incarnation.groups.record(p) else { return }
        var provider: ProcessID?
        for (i, m) in record.members.enumerated() where m != me && record.ready[i] {
            provider = m
            break
        }
        if let provider {
            if force || t.provider != provider || now >= t.requestedAt + settings.transferRetryTicks {
                t.provider = provider
                t.requestedAt = now
                incarnation.local[p] = .awaiting(t)
                send(provider.node, .checkpointRequest(pattern: p, after: after))
            }
        } else if record.members.first(where: { m in !record.ready[record.members.firstIndex(of: m)!] }) == me {
            completeTransfer(p, state: [], cut: nil)
        }
    }

    mutating func completeTransfer(_ p: TopicPattern, state: [UInt8], cut: StreamPosition?, skip: [PublishID] = []) {
        guard case .awaiting(let t) = incarnation.local[p] else { return }
        out.append(.applyCheckpoint(pattern: p, state: state))
        var skipping = Set(skip)
        for m in t.buffer where !(cut?.covers(m.id) ?? false) {
            if !skipping.isEmpty, skipping.remove(m.publish) != nil { continue }
            out.append(.deliver(Delivery(message: m, view: m.id.view, groups: [p], afterCheckpoint: true)))
        }
        if !skipping.isEmpty { incarnation.skip[p, default: []].formUnion(skipping) }
        incarnation.local[p] = .active
        if let cut, let log, cut.view >= log.view.id { incarnation.cuts[p] = cut }
        incarnation.trie.insert(p, p)
        incarnation.transferring.removeAll { $0 == p }
        publishControl(.groupReady(p))
    }

    mutating func checkpointRequested(from joiner: ProcessID, pattern: TopicPattern, after: StreamPosition) {
        guard inView else { return }
        incarnation.deferred.removeAll { $0.joiner == joiner && $0.pattern == pattern }
        incarnation.deferred.append((joiner, pattern, after))
        if incarnation.deferred.count > 1024 { incarnation.deferred.removeFirst() }
        serveDeferred()
    }

    mutating func serveDeferred() {
        guard let log else { return }
        var pos: StreamPosition?
        var i = 0
        while i < incarnation.deferred.count {
            let d = incarnation.deferred[i]
            guard log.view.contains(d.joiner) else {
                incarnation.deferred.remove(at: i)
                continue
            }
            if incarnation.local[d.pattern]?.isActive ?? false {
                let here = pos ?? log.position
                pos = here
                if here.isAtOrAfter(d.after) {
                    nextTicket += 1
                    incarnation.tickets[nextTicket] = Ticket(
                        joiner: d.joiner, pattern: d.pattern, cut: here, skip: incarnation.skip[d.pattern].map { $0.sorted() } ?? [])
                    out.append(.requestCheckpoint(CheckpointRequest(ticket: nextTicket, pattern: d.pattern, joiner: d.joiner, cut: here)))
                    incarnation.deferred.remove(at: i)
                    continue
                }
            }
            i += 1
        }
    }

    mutating func supplyCheckpoint(ticket: UInt64, state: [UInt8]) {
        guard let t = incarnation.tickets.removeValue(forKey: ticket), let log, log.view.contains(t.joiner) else { return }
        send(t.joiner.node, .checkpoint(pattern: t.pattern, cut: t.cut, state: state, skip: t.skip))
    }

    mutating func checkpointReceived(_ p: TopicPattern, cut: StreamPosition, state: [UInt8], skip: [PublishID]) {
        guard case .awaiting(let t) = incarnation.local[p], let after = t.after, cut.isAtOrAfter(after) else { return }
        completeTransfer(p, state: state, cut: cut, skip: skip)
    }
}
