/// A FIFO queue over an array with a moving head: amortised O(1) append and
/// pop-front, indexable, no Foundation and no dependency.
struct Ring<Element> {
    private(set) var items: [Element] = []
    private(set) var head = 0
    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    subscript(i: Int) -> Element {
        get { items[head + i] }
        set { items[head + i] = newValue }
    }
    var first: Element? { isEmpty ? nil : items[head] }
    mutating func append(_ e: Element) { items.append(e) }
    mutating func removeFirst() -> Element {
        let e = items[head]
        dropFirst(1)
        return e
    }
    mutating func dropFirst(_ n: Int) {
        precondition(n <= count, "dropFirst(\(n)) of \(count)")
        head += n
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
    }
    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }
    mutating func prepend(contentsOf es: [Element]) {
        items.replaceSubrange(0..<head, with: es)
        head = 0
    }
    var elements: ArraySlice<Element> { items[head...] }
}

/// One origin's messages in a view. Sequence numbers start at 1; messages at
/// or below `floor` were garbage-collected (stable and delivered here).
struct OriginStream: Sendable {
    /// Length of the contiguous received prefix.
    var received: UInt64 = 0
    var delivered: UInt64 = 0
    var floor: UInt64 = 0
    /// Messages `floor+1 ... received`.
    var buffer = Ring<DataMessage>()

    func message(_ seq: UInt64) -> DataMessage? {
        guard seq > floor, seq <= received else { return nil }
        return buffer[Int(seq - floor - 1)]
    }
    mutating func append(_ m: DataMessage) {
        precondition(m.id.seq == received + 1, "append \(m.id) after \(received)")
        buffer.append(m)
        received += 1
    }
    mutating func collect(upTo seq: UInt64) {
        let upTo = min(seq, delivered, received)
        guard upTo > floor else { return }
        buffer.dropFirst(Int(upTo - floor))
        floor = upTo
    }
}

/// The message log of one view: every origin's stream, the total order
/// known so far, what is stable, and the delivery rule.
///
/// Delivery rule (deadlock-free because the sequencer orders an origin's
/// messages in that origin's order): an origin's messages are delivered in
/// sequence order; a `fifo` message needs nothing more; a `total` or `safe`
/// message (and a group join/leave) must also be the next entry of the total
/// order; a `safe` one must also be stable. FIFO per publisher therefore
/// holds across levels (docs/virtual-synchrony.md, "Delivery rule"). While `limit` is set (the end of a
/// flush) delivery stops at the agreed cut and `safe` needs no stability
/// (the cut only contains `safe` messages that were already stable).
struct ViewLog: Sendable {
    let view: ClusterView
    let myRank: Int
    var streams: [OriginStream]
    /// Total-order entries `ordersFloor+1 ... ordersKnown`.
    var orders = Ring<OrderEntry>()
    var ordersFloor: UInt64 = 0
    var ordersKnown: UInt64 = 0
    var totalDelivered: UInt64 = 0
    /// What every member holds, as last computed by the coordinator.
    var stable: Digest
    /// Coordinator only: the last digest heard from each member.
    var memberDigests: [Digest]
    var limit: (cut: [UInt64], ordersCut: UInt64)?
    /// Payload bytes of own messages not yet stable (flow control).
    var ownUnstableBytes = 0
    /// Last NAK per origin, and for orders (rate limit).
    var nakAt: [Tick]
    var orderNakAt: Tick = 0
    var hasNakked: [Bool]
    var hasOrderNakked = false
    /// When each member was last heard from (failure detection).
    var heardAt: [Tick]

    init(view: ClusterView, me: ProcessID) {
        self.view = view
        guard let rank = view.rank(of: me) else { preconditionFailure("\(me) not in \(view)") }
        self.myRank = rank
        let n = view.members.count
        self.streams = Array(repeating: OriginStream(), count: n)
        self.stable = Digest(received: Array(repeating: 0, count: n), ordersKnown: 0)
        self.memberDigests = rank == 0 ? Array(repeating: Digest(received: Array(repeating: 0, count: n), ordersKnown: 0), count: n) : []
        self.nakAt = Array(repeating: 0, count: n)
        self.hasNakked = Array(repeating: false, count: n)
        self.heardAt = Array(repeating: 0, count: n)
    }

    // Inlined: the log is reached through `GroupNode.member`'s box, and an
    // out-of-line getter would be handed a copy of the whole log.
    @inline(__always) var isSequencer: Bool { myRank == 0 }
    @inline(__always) var digest: Digest { Digest(received: streams.map(\.received), ordersKnown: ordersKnown) }
    var position: StreamPosition { StreamPosition(view: view.id, delivered: streams.map(\.delivered)) }
    var ownSent: UInt64 { streams[myRank].received }
    @inline(__always) var ownUnstableCount: Int { Int(streams[myRank].received - stable.received[myRank]) }

    func entry(_ index: UInt64) -> OrderEntry? {
        guard index > ordersFloor, index <= ordersKnown else { return nil }
        return orders[Int(index - ordersFloor - 1)]
    }
    /// An own message, sent now: counted unstable until stable.
    mutating func appendOwn(_ m: DataMessage) {
        streams[myRank].append(m)
        ownUnstableBytes += m.payload.count
    }
    mutating func appendEntry(_ e: OrderEntry) {
        orders.append(e)
        ordersKnown += 1
    }

    /// Whether `m` is delivered in the total order (not per origin only).
    @inline(__always)
    static func isOrdered(_ m: DataMessage) -> Bool { m.level.isTotallyOrdered }

    /// The next message of origin `r` if the delivery rule allows it now;
    /// advances the delivery counters.
    mutating func nextDeliverable(_ r: Int) -> DataMessage? {
        let seq = streams[r].delivered + 1
        guard seq <= streams[r].received else { return nil }
        if let limit, seq > limit.cut[r] { return nil }
        guard let m = streams[r].message(seq) else {
            preconditionFailure("message \(r).\(seq) missing: floor \(streams[r].floor) received \(streams[r].received)")
        }
        if !Self.isOrdered(m) {
            streams[r].delivered = seq
            return m
        }
        let g = totalDelivered + 1
        guard let e = entry(g), e.origin == UInt32(r), e.seq == seq else { return nil }
        if let limit {
            guard g <= limit.ordersCut else { return nil }
        } else if m.level.needsStability && stable.received[r] < seq {
            return nil
        }
        streams[r].delivered = seq
        totalDelivered = g
        return m
    }

    /// Delivers what the rule allows, starting with origin `hint`.
    mutating func deliverReady(hint: Int?, into out: inout [DataMessage]) {
        if let r = hint {
            var ordered = false
            while let m = nextDeliverable(r) {
                out.append(m)
                if Self.isOrdered(m) { ordered = true }
            }
            if !ordered { return }
        }
        var progress = true
        while progress {
            progress = false
            for r in streams.indices {
                while let m = nextDeliverable(r) {
                    out.append(m)
                    progress = true
                }
            }
        }
    }

    /// Garbage collection: drop messages and entries that are stable and
    /// delivered here. Called after `stable` advances.
    mutating func collect() {
        for r in streams.indices { streams[r].collect(upTo: stable.received[r]) }
        let upTo = min(stable.ordersKnown, totalDelivered, ordersKnown)
        if upTo > ordersFloor {
            orders.dropFirst(Int(upTo - ordersFloor))
            ordersFloor = upTo
        }
    }

    /// Adopts a stable digest if it is newer; returns true when it advanced.
    mutating func adoptStable(_ d: Digest) -> Bool {
        guard d.received.count == stable.received.count else { return false }
        var advanced = false
        for r in stable.received.indices where d.received[r] > stable.received[r] {
            if r == myRank {
                // Bounded by what this process sent: a digest claiming more
                // (a peer's bad numbers; found by FuzzCore) cannot make it
                // walk up to 2^64 sequence numbers.
                var s = stable.received[r] + 1
                let last = min(d.received[r], streams[r].received)
                while s <= last {
                    if let m = streams[r].message(s) { ownUnstableBytes -= m.payload.count }
                    s += 1
                }
            }
            stable.received[r] = d.received[r]
            advanced = true
        }
        if d.ordersKnown > stable.ordersKnown {
            stable.ordersKnown = d.ordersKnown
            advanced = true
        }
        if advanced { collect() }
        return advanced
    }

    /// Coordinator: record a member's digest; returns the new stable digest
    /// if it advanced (Isis's stability tracking, gathered at the
    /// sequencer so its cost stays linear in the view size).
    mutating func recordDigest(_ d: Digest, of rank: Int) -> Bool {
        guard isSequencer, d.received.count == streams.count else { return false }
        var old = memberDigests[rank]
        for r in d.received.indices where d.received[r] > old.received[r] { old.received[r] = d.received[r] }
        old.ordersKnown = max(old.ordersKnown, d.ordersKnown)
        memberDigests[rank] = old
        return recomputeStable()
    }

    mutating func recomputeStable() -> Bool {
        guard isSequencer else { return false }
        memberDigests[myRank] = digest
        var mins = memberDigests[0]
        for i in 1..<memberDigests.count {
            let d = memberDigests[i]
            for r in mins.received.indices where d.received[r] < mins.received[r] { mins.received[r] = d.received[r] }
            if d.ordersKnown < mins.ordersKnown { mins.ordersKnown = d.ordersKnown }
        }
        return adoptStable(mins)
    }

    /// Messages held and not garbage-collected, per origin in order.
    var heldMessages: [DataMessage] {
        var out: [DataMessage] = []
        for s in streams { out.append(contentsOf: s.buffer.elements) }
        return out
    }
    var heldOrders: [OrderEntry] { Array(orders.elements) }

    /// Whether this member holds (or held and collected) message `id`.
    func holds(_ id: MessageID) -> Bool {
        id.view == view.id && Int(id.origin) < streams.count && streams[Int(id.origin)].received >= id.seq
    }
}
extension Ring: Sendable where Element: Sendable {}
