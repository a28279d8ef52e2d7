import PiglixGroups
import PiglixTopics
import PiglixWire

/// What a subscriber wants done when its queue is full (docs/protocol.md, "Slow subscribers").
public enum OverflowPolicy: String, Sendable, CaseIterable {
    /// Drop the oldest queued messages and send a `gap` record with the count
    /// lost. The default: a slow browser tab keeps its stream.
    case dropOldest = "drop-oldest"
    /// End the stream with an `end` record saying why.
    case disconnect
}

/// Every bound the broker keeps, built once and validated (`validate()`),
/// so no subsystem invents its own defaults.
public struct BrokerSettings: Sendable, Hashable {
    /// This node's id, as `/v1/cluster` and `view` records show it.
    public var nodeID = "n1"
    public var topicLimits = TopicLimits.default
    public var headerLimits = HeaderLimits.default
    /// Largest payload of one message.
    public var messageBytesMax = 1 << 20
    /// Retained history per topic: most messages and bytes.
    public var retainedMessagesPerTopicMax = 1000
    public var retainedBytesPerTopicMax = 4 << 20
    /// Retained history over all topics: most messages and bytes.
    public var retainedMessagesMax = 1_000_000
    public var retainedBytesMax = 256 << 20
    /// Per subscriber queue: most messages and bytes waiting to be written.
    public var subscriberQueueMessagesMax = 10_000
    public var subscriberQueueBytesMax = 16 << 20
    public var defaultOverflow = OverflowPolicy.dropOldest
    /// Most open subscriptions on this node, and patterns in one subscription.
    public var subscriptionsMax = 10_000
    public var patternsPerSubscriptionMax = 16
    /// Most literal topics kept in the pattern trie's match cache.
    public var matchCacheTopicsMax = 4096
    /// Idempotent publish: sequence numbers remembered per producer and
    /// producers remembered per node (docs/patterns.md, "Idempotent publish").
    public var idempotence = IdempotenceLimits.default
    /// Locks (docs/patterns.md, "Locks").
    public var locks = LockSettings()
    /// Work queues: queues, members per queue, unacked messages per queue,
    /// in flight per member (docs/patterns.md, "Work queues"). Every node
    /// of a cluster must use the same values: the table decides with them.
    public var queues = QueueLimits.default

    public init() {}

    /// Why a settings value is unusable.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public func validate() throws(Invalid) {
        func positive(_ value: Int, _ name: String) throws(Invalid) {
            if value <= 0 { throw Invalid(description: "\(name) must be positive, not \(value)") }
        }
        if nodeID.isEmpty || nodeID.utf8.count > 64 { throw Invalid(description: "node id must be 1 to 64 bytes") }
        try positive(topicLimits.tokensMax, "topic tokens limit")
        try positive(topicLimits.bytesMax, "topic bytes limit")
        try positive(topicLimits.tokenBytesMax, "topic token bytes limit")
        if topicLimits.bytesMax > 65535 { throw Invalid(description: "topic bytes limit must be at most 65535") }
        try positive(messageBytesMax, "message bytes limit")
        if messageBytesMax > 64 << 20 { throw Invalid(description: "message bytes limit must be at most 64 MiB") }
        try positive(retainedMessagesPerTopicMax, "retained messages per topic")
        try positive(retainedBytesPerTopicMax, "retained bytes per topic")
        try positive(retainedMessagesMax, "retained messages")
        try positive(retainedBytesMax, "retained bytes")
        try positive(subscriberQueueMessagesMax, "subscriber queue messages")
        try positive(subscriberQueueBytesMax, "subscriber queue bytes")
        if subscriberQueueBytesMax < messageBytesMax {
            throw Invalid(description: "subscriber queue bytes (\(subscriberQueueBytesMax)) must hold at least one message of the largest size (\(messageBytesMax))")
        }
        try positive(subscriptionsMax, "subscriptions")
        try positive(patternsPerSubscriptionMax, "patterns per subscription")
        if idempotence.windowSequences < 1 || idempotence.windowSequences > 1 << 20 {
            throw Invalid(description: "idempotence window must be 1 to 1048576 sequence numbers, not \(idempotence.windowSequences)")
        }
        if idempotence.producersMax < 1 || idempotence.producersMax > 1 << 20 {
            throw Invalid(description: "idempotence producers must be 1 to 1048576, not \(idempotence.producersMax)")
        }
        if let name = queues.invalid { throw Invalid(description: "work queue limit \(name) must be positive") }
        if headerLimits.countMax > 255 { throw Invalid(description: "header count limit must be at most 255, not \(headerLimits.countMax)") }
        try locks.validate()
        if matchCacheTopicsMax < 0 { throw Invalid(description: "match cache size must not be negative") }
    }
}

/// The bounds of locks (docs/patterns.md, "Locks"). `table` is decided at
/// delivery on every node, so every node of a cluster needs the same.
public struct LockSettings: Sendable, Hashable {
    /// Locks existing at once in the cluster (10,000) and requests waiting
    /// for one lock (100); past them a request is refused with 429.
    public var table = LockLimits(locksMax: 10_000, waitersMax: 100)
    /// Open lock streams (held or waiting) on this node; past it 503.
    public var streamsPerNodeMax = 10_000
    /// Open lock streams on one HTTP connection; past it 429.
    public var streamsPerConnectionMax = 100
    /// A node ends its lock streams when it has not heard from a majority
    /// of its view for this fraction of the suspicion timeout (the lease),
    /// so a holder cut off gives up before the majority can exclude its
    /// node (a full suspicion timeout, then a flush) and grant again.
    public var leaseFraction = 0.5
    /// The lock-delay, as a fraction of the suspicion timeout: a lock whose
    /// holder's node was excluded by a view change is granted again at
    /// once in the table (the token is agreed), but the new holder's client
    /// is told only this long after the exclusion reached its node, so the
    /// excluded node's lease (which stops when the survivors stop talking
    /// to it, at the latest at their install) has run out first, whenever
    /// the partition healed. Must exceed `leaseFraction`: the margin covers
    /// the lease check's period and message delays.
    public var delayFraction = 0.75
    /// Longest lock name in bytes.
    public var nameBytesMax = 128

    public init() {}

    public func validate() throws(BrokerSettings.Invalid) {
        if table.locksMax < 1 || table.waitersMax < 0 {
            throw .init(description: "locks bound must be positive and waiters bound not negative (\(table))")
        }
        if streamsPerNodeMax < 1 || streamsPerConnectionMax < 1 { throw .init(description: "lock stream bounds must be positive") }
        if !(leaseFraction > 0 && leaseFraction < 1) { throw .init(description: "lock lease fraction must lie in (0, 1), not \(leaseFraction)") }
        if !(delayFraction > leaseFraction && delayFraction <= 2) {
            throw .init(description: "lock-delay fraction must exceed the lease fraction (\(leaseFraction)) and be at most 2, not \(delayFraction)")
        }
        if nameBytesMax < 1 || nameBytesMax > 1024 { throw .init(description: "lock name bytes must be 1 to 1024") }
    }
}
