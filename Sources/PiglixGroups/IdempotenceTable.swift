/// Idempotent publish (docs/patterns.md, "Idempotent publish"): which
/// `(producer, sequence)` pairs were already delivered, and as what.
///
/// A pure value, like the rest of this module: the broker keeps one per
/// node and feeds it every delivery of an idempotent record in the agreed
/// delivery order, so every member that fed it the same deliveries holds
/// the same table and makes the same decisions. The simulator's
/// application model uses the same type.
///
/// Bounds (`IdempotenceLimits`): per producer, the `windowSequences`
/// sequence numbers ending at the highest one delivered; at most
/// `producersMax` producers, the least recently used (by admission) is
/// forgotten when another one arrives.
public struct IdempotenceLimits: Hashable, Sendable {
    /// Sequence numbers remembered per producer: `(highest - window, highest]`.
    public var windowSequences: UInt64 = 1024
    /// Producers remembered per node; beyond it the least recently used
    /// producer is forgotten.
    public var producersMax: Int = 1024

    public init(windowSequences: UInt64 = 1024, producersMax: Int = 1024) {
        self.windowSequences = windowSequences
        self.producersMax = producersMax
    }

    public static let `default` = IdempotenceLimits()
}

/// What the table says about a record at its delivery.
public enum IdempotenceDecision<Original: Hashable & Sendable>: Hashable, Sendable {
    /// Not seen: deliver it; it is now recorded as the original.
    case new
    /// Delivered before as `original`: do not deliver it again.
    case duplicate(Original)
    /// Older than the producer's window (`sequence <= highest - window`) and
    /// not remembered: refuse it; it may or may not have been delivered.
    case tooOld(highest: UInt64)
}

public struct IdempotenceTable<Original: Hashable & Sendable>: Sendable {
    public let limits: IdempotenceLimits

    struct Entry: Hashable, Sendable {
        var original: Original
        /// Admission order on this node (re-admission after a checkpoint).
        var stamp: UInt64
    }

    struct Producer: Hashable, Sendable {
        var highest: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        /// Stamp of the last admission (least recently used eviction).
        var used: UInt64 = 0
    }

    var producers: [String: Producer] = [:]
    var clock: UInt64 = 0
    /// Producers forgotten to make room (`producersMax`).
    public private(set) var evictions: UInt64 = 0

    public init(limits: IdempotenceLimits = .default) {
        precondition(limits.windowSequences > 0 && limits.producersMax > 0, "idempotence limits must be positive: \(limits)")
        self.limits = limits
    }

    public var producerCount: Int { producers.count }
    public var entryCount: Int { producers.values.reduce(0) { $0 + $1.entries.count } }

    /// The decision for `(producer, sequence)` without recording anything.
    public func lookup(producer: String, sequence: UInt64) -> IdempotenceDecision<Original> {
        guard let p = producers[producer] else { return .new }
        return Self.decide(p, sequence, window: limits.windowSequences)
    }

    @inline(__always)
    static func decide(_ p: Producer, _ sequence: UInt64, window: UInt64) -> IdempotenceDecision<Original> {
        // Window first, so what is remembered below it (not yet pruned)
        // cannot make two members decide differently.
        if sequence <= p.highest, p.highest - sequence >= window { return .tooOld(highest: p.highest) }
        if let e = p.entries[sequence] { return .duplicate(e.original) }
        return .new
    }

    /// Decides a delivered record and records it when it is new.
    public mutating func admit(producer: String, sequence: UInt64, original: Original) -> IdempotenceDecision<Original> {
        let window = limits.windowSequences
        if var p = producers.removeValue(forKey: producer) {
            let decision = Self.decide(p, sequence, window: window)
            if case .new = decision { record(&p, sequence, original) }
            producers[producer] = p
            return decision
        }
        if producers.count >= limits.producersMax { evictLeastRecentlyUsed() }
        var p = Producer()
        record(&p, sequence, original)
        producers[producer] = p
        return .new
    }

    private mutating func record(_ p: inout Producer, _ sequence: UInt64, _ original: Original) {
        clock += 1
        p.used = clock
        p.entries[sequence] = Entry(original: original, stamp: clock)
        if sequence > p.highest { p.highest = sequence }
        // Pruned in bulk (amortised O(1)): at most 2 windows are held.
        if UInt64(p.entries.count) >= 2 * limits.windowSequences {
            let floor = p.highest >= limits.windowSequences ? p.highest - limits.windowSequences : 0
            p.entries = p.entries.filter { $0.key > floor }
        }
    }

    private mutating func evictLeastRecentlyUsed() {
        // Ties cannot happen (stamps are unique); min over names keeps it
        // deterministic anyway.
        guard let victim = producers.min(by: { ($0.value.used, $0.key) < ($1.value.used, $1.key) })?.key else { return }
        producers[victim] = nil
        evictions += 1
    }

    /// The original recorded for `(producer, sequence)` while the table
    /// still holds it, inside the window or below it (until the bulk prune):
    /// what a delivery released after a checkpoint is compared with. That
    /// record was decided at its live delivery, and the producer's window
    /// may have moved past it since (seed 153179), so `lookup`, which
    /// refuses what is below the window, would withhold the original.
    public func remembered(producer: String, sequence: UInt64) -> Original? {
        producers[producer]?.entries[sequence]?.original
    }

    /// The original of `(producer, sequence)`, if remembered inside the window.
    public func original(producer: String, sequence: UInt64) -> Original? {
        if case .duplicate(let o) = lookup(producer: producer, sequence: sequence) { return o }
        return nil
    }

    // MARK: State transfer

    /// One producer's state in a checkpoint.
    public struct ProducerState: Hashable, Sendable {
        public var producer: String
        public var highest: UInt64
        /// Sequence numbers inside the window with their originals, in
        /// admission order.
        public var entries: [(sequence: UInt64, original: Original)]
        public init(producer: String, highest: UInt64, entries: [(sequence: UInt64, original: Original)]) {
            self.producer = producer
            self.highest = highest
            self.entries = entries
        }
        public static func == (a: Self, b: Self) -> Bool {
            a.producer == b.producer && a.highest == b.highest && a.entries.elementsEqual(b.entries) { $0 == $1 }
        }
        public func hash(into h: inout Hasher) {
            h.combine(producer)
            h.combine(highest)
            for e in entries {
                h.combine(e.sequence)
                h.combine(e.original)
            }
        }
    }

    /// The table, least recently used producer first, entries inside the
    /// window only, each producer's in admission order.
    /// Drops the entries whose original `phantom` names: records this
    /// node's table holds through a checkpoint although the primary never
    /// delivered them (`GroupEffect.forgetDeliveries`). A producer's
    /// highest sequence goes back to the highest it still remembers when
    /// the dropped entry was the highest.
    public mutating func forget(_ phantom: (Original) -> Bool) {
        for name in producers.keys.sorted() {
            var p = producers[name]!
            let dropped = p.entries.filter { phantom($0.value.original) }.keys
            guard !dropped.isEmpty else { continue }
            for s in dropped { p.entries[s] = nil }
            if dropped.contains(p.highest) { p.highest = p.entries.keys.max() ?? 0 }
            producers[name] = p.entries.isEmpty && p.highest == 0 ? nil : p
        }
    }

    public func snapshot() -> [ProducerState] {
        producers.sorted { $0.value.used < $1.value.used }.map { name, p in
            let floor = p.highest >= limits.windowSequences ? p.highest - limits.windowSequences : 0
            let entries = p.entries.filter { $0.key > floor }.sorted { $0.value.stamp < $1.value.stamp }
            return ProducerState(producer: name, highest: p.highest, entries: entries.map { ($0.key, $0.value.original) })
        }
    }

    /// Takes a provider's table at a checkpoint's cut, then admits again, in
    /// their order, this node's own admissions that `keepOwn` says came
    /// after the cut (the provider had not seen them): the result is the
    /// table the provider holds after the same deliveries.
    public mutating func merge(_ snapshot: [ProducerState], keepingOwn keepOwn: (Original) -> Bool) {
        var own: [(stamp: UInt64, producer: String, sequence: UInt64, original: Original)] = []
        for (name, p) in producers {
            for (sequence, e) in p.entries where keepOwn(e.original) {
                own.append((e.stamp, name, sequence, e.original))
            }
        }
        own.sort { $0.stamp < $1.stamp }
        producers.removeAll(keepingCapacity: true)
        for state in snapshot.suffix(limits.producersMax) {
            var p = Producer(highest: state.highest)
            for e in state.entries {
                clock += 1
                p.entries[e.sequence] = Entry(original: e.original, stamp: clock)
            }
            clock += 1
            p.used = clock
            producers[state.producer] = p
        }
        for o in own { _ = admit(producer: o.producer, sequence: o.sequence, original: o.original) }
    }
}
