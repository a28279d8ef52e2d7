import DequeModule
import NIOCore
import PiglixTopics
import PiglixWire

/// Identifies one subscription on this node.
public struct SubscriptionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public var description: String { "s\(rawValue)" }
}

/// Where a new subscription starts.
public enum StartPosition: Sendable, Equatable {
    /// Only messages published from now on.
    case live
    /// Everything retained for the matching topics, then live.
    case earliest
    /// Retained messages after this id, then live (`Last-Event-ID`).
    case after(MessageID)
}

/// Options a subscriber chooses.
public struct SubscriptionOptions: Sendable {
    public var overflow: OverflowPolicy
    public var start: StartPosition
    public init(overflow: OverflowPolicy, start: StartPosition = .live) {
        self.overflow = overflow
        self.start = start
    }
}

/// What a subscriber's writer takes from its queue in one go.
public struct SubscriptionBatch: Sendable {
    /// Messages dropped for this subscriber since the last batch (drop-oldest).
    /// They were older than every message in `messages`.
    public var lost: UInt64 = 0
    public var messages: [StoredMessage] = []
    /// Set when the stream must end, with the reason for the `end` record.
    public var end: String?
    /// Nothing was queued for a heartbeat interval.
    public var heartbeat = false
}

/// The queue of one subscriber, kept inside the broker's lock.
struct SubscriberQueue {
    let patterns: [TopicPattern]
    let overflow: OverflowPolicy
    var messages: Deque<StoredMessage> = []
    var bytes = 0
    var lost: UInt64 = 0
    var end: String?
    var heartbeatDue = false
    var waiter: CheckedContinuation<Void, Never>?
    var delivered: UInt64 = 0
    var droppedTotal: UInt64 = 0

    var isReady: Bool { !messages.isEmpty || lost > 0 || end != nil || heartbeatDue }
}

/// A live subscription: the handle its stream writer pulls batches from.
/// Cancel it (or let its stream end) to unsubscribe.
public final class Subscription: Sendable {
    public let id: SubscriptionID
    public let patterns: [TopicPattern]
    /// Newest retained id among the matching topics when it started (for the
    /// response's `Last-Event-ID` header).
    public let newestRetained: MessageID?
    let broker: Broker

    init(id: SubscriptionID, patterns: [TopicPattern], newestRetained: MessageID?, broker: Broker) {
        self.id = id
        self.patterns = patterns
        self.newestRetained = newestRetained
        self.broker = broker
    }

    /// Waits until something is ready, then takes up to `maxBytes` of
    /// messages (at least one). With `linger`, waits that long for more
    /// before taking, unless `maxBytes` is already queued.
    public func next(maxBytes: Int, linger: Duration = .zero) async -> SubscriptionBatch {
        await broker.waitReady(id)
        if linger > .zero, !broker.hasQueued(id, bytes: maxBytes) {
            try? await Task.sleep(for: linger)
        }
        return broker.take(id, maxBytes: maxBytes)
    }

    /// Ends the subscription; a writer waiting in `next` gets an `end`.
    public func cancel(reason: String = "unsubscribed") {
        broker.unsubscribe(id, reason: reason)
    }

    deinit {
        broker.unsubscribe(id, reason: "released")
    }
}
