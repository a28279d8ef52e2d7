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
    /// The current request's id (chunks of an older request are ignored).
    var request: UInt64 = 0
    /// Chunks of the current request handed to the application, and
    /// applied by it (it answers in order).
    var received: UInt32 = 0
    var applied: UInt32 = 0
    /// The index of the last chunk, once it has arrived.
    var lastChunk: UInt32?
    /// The cut and skip list the current request's first chunk carried.
    var cut: StreamPosition?
    var skip: [PublishID] = []
    /// Providers whose transfer failed (a chunk the application could not
    /// apply, a chunk out of order): tried again only when no other is ready.
    var failed: Set<ProcessID> = []
    /// Started from the empty state (no member was ready).
    var empty = false
    /// Taken again after a flush cut a message the first checkpoint held
    /// (`GroupSettings.orderedStateGroups`): this member may be marked
    /// ready in the group's record while it waits.
    var again = false

    /// Forgets the current request's progress: the next request starts at
    /// chunk 0, whose `first` flag resets the application's partial state.
    mutating func resetProgress() {
        provider = nil
        received = 0
        applied = 0
        lastChunk = nil
        cut = nil
        skip = []
        empty = false
    }
}

/// A joiner's request waiting for this provider to reach its position.
struct DeferredRequest: Sendable {
    var joiner: ProcessID
    var pattern: TopicPattern
    var after: StreamPosition
    var request: UInt64
}

/// A checkpoint this provider is sending in chunks, under flow control: at
/// most `transferWindowChunks` sent and not acknowledged by the joiner.
struct Ticket: Sendable {
    var joiner: ProcessID
    var pattern: TopicPattern
    var cut: StreamPosition
    /// The provider's re-sends to skip for the pattern at the cut.
    var skip: [PublishID]
    /// The joiner's request id, echoed in every chunk.
    var request: UInt64
    var sent: UInt32 = 0
    var acked: UInt32 = 0
    /// A chunk is asked of the application and not yet supplied.
    var asking = true
    /// Last chunk sent or ack received: a transfer silent for long is dropped.
    var progressAt: Tick
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
        // Between its flush report and the install, a member neither asks
        // nor starts empty: the install decides on what every member agrees
        // was ready (seed 2021037, `checkpointChunkReceived`).
        guard !flushing else { return }
        // An empty start not yet complete is decided again: its answer may
        // have come during a flush, and been ignored.
        if force, t.empty {
            t.resetProgress()
            incarnation.local[p] = .awaiting(t)
        }
        let ready = record.members.enumerated().filter { $0.element != me && record.ready[$0.offset] }.map(\.element)
        // Taking the state again, a member marked ready may be taking it
        // again too (and serves nothing until it has): one that has not
        // answered within the retry period yields to the next.
        if t.again, !force, let old = t.provider, now >= t.requestedAt + settings.transferRetryTicks { t.failed.insert(old) }
        // A provider that failed is tried again only when no other is ready.
        let provider = ready.first { !t.failed.contains($0) } ?? ready.first
        if provider == nil, let old = t.provider, !(log?.view.contains(old) ?? false) {
            // The provider left the view: forget its request.
            t.resetProgress()
            incarnation.local[p] = .awaiting(t)
        }
        if let provider {
            if force || t.provider != provider || now >= t.requestedAt + settings.transferRetryTicks {
                if t.provider != nil || t.received > 0 { t.resetProgress() }
                nextTicket += 1
                t.request = nextTicket
                t.provider = provider
                t.requestedAt = now
                incarnation.local[p] = .awaiting(t)
                send(provider.node, .checkpointRequest(pattern: p, after: after, request: t.request))
            }
        } else if t.again ? !t.empty : record.members.first(where: { m in !record.ready[record.members.firstIndex(of: m)!] }) == me && !t.empty {
            // No member holds the history: start empty, as one chunk that
            // is both first and last. (Taking the state again, this member
            // may be marked ready; if no other is, nobody else holds the
            // primary's history either: it starts empty too.)
            t.resetProgress()
            nextTicket += 1
            t.request = nextTicket
            t.empty = true
            t.received = 1
            t.lastChunk = 0
            incarnation.local[p] = .awaiting(t)
            out.append(.applyCheckpointChunk(CheckpointChunk(pattern: p, request: t.request, index: 0, cut: nil, skip: [], state: [], last: true)))
        }
    }

    /// The joiner's side: a chunk of the current request, in order, goes to
    /// the application; anything else restarts the transfer.
    mutating func checkpointChunkReceived(from provider: ProcessID, _ chunk: CheckpointChunk) {
        let p = chunk.pattern
        guard case .awaiting(var t) = incarnation.local[p], let after = t.after, t.provider == provider, chunk.request == t.request else { return }
        // Reported to a flush: the report named the groups active here, and
        // the install marks only those ready. A transfer completed after it
        // would be known to this member alone, and another member, finding
        // none ready, would start the group empty (seed 2021037). The
        // install asks again, from chunk 0, for every transfer in progress.
        guard !flushing else { return }
        // A provider the view no longer holds (it was excluded, e.g. paused
        // past the timeout, and answers on resuming) may hold a history the
        // group has since started over without (seed 1403822: the others
        // started `s.>` empty while this joiner took the excluded
        // provider's 61 messages).
        guard let log, log.view.contains(provider) else { return }
        guard let cut = chunk.cut, cut.isAtOrAfter(after), chunk.index == t.received, t.lastChunk == nil, t.cut == nil || t.cut == cut else {
            return restartTransfer(p, failed: provider)
        }
        if chunk.index == 0 {
            t.cut = cut
            t.skip = chunk.skip
        }
        t.received += 1
        if chunk.last { t.lastChunk = chunk.index }
        t.requestedAt = now
        incarnation.local[p] = .awaiting(t)
        out.append(.applyCheckpointChunk(chunk))
    }

    /// The application applied (or could not apply) a chunk: acknowledge it,
    /// which lets the provider send more, and complete after the last.
    mutating func checkpointChunkApplied(_ p: TopicPattern, request: UInt64, index: UInt32, ok: Bool) {
        guard case .awaiting(var t) = incarnation.local[p], request == t.request, index == t.applied else { return }
        // As for a chunk received while flushing (above).
        guard !flushing else { return }
        guard ok else { return restartTransfer(p, failed: t.provider) }
        t.applied += 1
        t.requestedAt = now
        incarnation.local[p] = .awaiting(t)
        if let provider = t.provider { send(provider.node, .checkpointAck(pattern: p, request: request, index: index)) }
        if t.lastChunk == index { completeTransfer(p, cut: t.cut, skip: t.skip) }
    }

    /// A transfer failed: ask another ready member (the failed one only if
    /// no other is ready), from chunk 0.
    mutating func restartTransfer(_ p: TopicPattern, failed provider: ProcessID?) {
        guard case .awaiting(var t) = incarnation.local[p] else { return }
        if let provider { t.failed.insert(provider) }
        t.resetProgress()
        incarnation.local[p] = .awaiting(t)
        evaluateTransfer(p, force: true)
    }

    mutating func completeTransfer(_ p: TopicPattern, cut: StreamPosition?, skip: [PublishID]) {
        guard case .awaiting(let t) = incarnation.local[p] else { return }
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
        if p == settings.prerequisiteGroup { joinDeferredGroups() }
    }

    mutating func checkpointRequested(from joiner: ProcessID, pattern: TopicPattern, after: StreamPosition, request: UInt64) {
        guard inView else { return }
        // A new request from the joiner replaces its older ones.
        for (ticket, old) in incarnation.tickets where old.joiner == joiner && old.pattern == pattern {
            dropTicket(ticket)
        }
        incarnation.deferred.removeAll { $0.joiner == joiner && $0.pattern == pattern }
        incarnation.deferred.append(DeferredRequest(joiner: joiner, pattern: pattern, after: after, request: request))
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
                        joiner: d.joiner, pattern: d.pattern, cut: here, skip: incarnation.skip[d.pattern].map { $0.sorted() } ?? [],
                        request: d.request, progressAt: now)
                    out.append(.requestCheckpoint(CheckpointRequest(ticket: nextTicket, pattern: d.pattern, joiner: d.joiner, cut: here)))
                    incarnation.deferred.remove(at: i)
                    continue
                }
            }
            i += 1
        }
    }

    /// The application supplied the next chunk of a ticket: send it, and ask
    /// for the one after while the window has room.
    mutating func supplyCheckpointChunk(ticket: UInt64, state: [UInt8], last: Bool) {
        guard var t = incarnation.tickets[ticket], t.asking else { return }
        guard let log, log.view.contains(t.joiner) else { return dropTicket(ticket) }
        let chunk = CheckpointChunk(
            pattern: t.pattern, request: t.request, index: t.sent, cut: t.cut, skip: t.sent == 0 ? t.skip : [], state: state, last: last)
        send(t.joiner.node, .checkpointChunk(chunk))
        t.sent += 1
        t.asking = false
        t.progressAt = now
        if last {
            // Nothing more to send: the application has dropped its reader.
            incarnation.tickets[ticket] = nil
            return
        }
        incarnation.tickets[ticket] = t
        askForChunk(ticket)
    }

    mutating func checkpointAcked(from joiner: ProcessID, pattern: TopicPattern, request: UInt64, index: UInt32) {
        guard let (ticket, t) = incarnation.tickets.first(where: { $0.value.joiner == joiner && $0.value.request == request }),
            t.pattern == pattern, index < t.sent
        else { return }
        incarnation.tickets[ticket]!.acked = max(t.acked, index + 1)
        incarnation.tickets[ticket]!.progressAt = now
        askForChunk(ticket)
    }

    mutating func askForChunk(_ ticket: UInt64) {
        guard var t = incarnation.tickets[ticket], !t.asking, t.sent - t.acked < UInt32(settings.transferWindowChunks) else { return }
        t.asking = true
        incarnation.tickets[ticket] = t
        out.append(.requestCheckpointChunk(ticket: ticket))
    }

    /// Ends a ticket before its last chunk: the application drops its reader.
    mutating func dropTicket(_ ticket: UInt64) {
        guard incarnation.tickets.removeValue(forKey: ticket) != nil else { return }
        out.append(.releaseCheckpoint(ticket: ticket))
    }

    /// Drops tickets whose joiner left the view or went silent (it asks again
    /// if it still wants the state).
    mutating func expireTickets() {
        guard !incarnation.tickets.isEmpty else { return }
        let view = log?.view
        for (ticket, t) in incarnation.tickets
        where !(view?.contains(t.joiner) ?? false) || now >= t.progressAt + 4 * settings.transferRetryTicks {
            dropTicket(ticket)
        }
    }
}
