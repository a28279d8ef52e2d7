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
    /// Group view changes, to write after `messages` (in a cluster: a view
    /// record sits between the messages of the old view and the new one).
    public var views: [ControlRecord] = []
    /// More was left queued than this batch could take: the writer yields
    /// its thread before the next batch, so a thousand busy streams take
    /// turns with each other and with requests (one batch each per turn).
    public var more = false
}

/// Where a subscription's replay of retained history stands: it reads
/// retention from here as its queue drains, and joins live traffic when it
/// has caught up (no copy of the history, whatever its size).
struct ReplayCursor {
    /// The last sequence examined.
    var after: UInt64
    /// Cluster resume: messages this position covers are skipped.
    var notCoveredBy: ClusterPosition?
}

/// The queue of one subscriber, kept inside the broker's lock. A class, so
/// the fan-out appends to it in place through a reference (a struct in the
/// dictionary was copied out and back on every append).
final class SubscriberQueue {
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
    /// View records and how many messages had been queued before each.
    var views: Deque<(after: UInt64, record: ControlRecord)> = []
    var enqueuedTotal: UInt64 = 0
    var dequeuedTotal: UInt64 = 0
    /// Cluster: the position of the last message queued (or the node's
    /// position when the subscription started): a checkpoint after a rejoin
    /// adds exactly the retained messages it does not cover.
    var lastPosition: ClusterPosition?
    /// Cluster: live messages a resume position already covers are skipped
    /// (the client saw them on another node that was ahead of this one).
    var resumeFloor: ClusterPosition?
    /// Cluster: patterns whose group is still joining; the subscription is
    /// registered for live traffic once this is empty.
    var joining: Set<TopicPattern> = []
    var start: StartPosition = .live
    /// Replay still reading retention; the subscription is not in the live
    /// trie until it catches up.
    var replay: ReplayCursor?
    var registered: CheckedContinuation<Void, Never>?
    var newestRetained: MessageID?
    /// A work queue member's stream: the queue's name. It is in no trie and
    /// no group; it gets what the queue table assigns it.
    var workQueue: String?

    init(patterns: [TopicPattern], overflow: OverflowPolicy) {
        self.patterns = patterns
        self.overflow = overflow
    }

    var isReady: Bool { !messages.isEmpty || lost > 0 || end != nil || heartbeatDue || !views.isEmpty || replay != nil }

    /// The last view record sent or queued per group: a repeat is not queued.
    var lastView: [String: ControlRecord] = [:]

    func queueView(_ record: ControlRecord) -> CheckedContinuation<Void, Never>? {
        if case .view(let group, _, _, _) = record {
            if lastView[group] == record { return nil }
            lastView[group] = record
        }
        views.append((enqueuedTotal, record))
        return takeWaiter()
    }

    enum EnqueueOutcome {
        case queued(wake: CheckedContinuation<Void, Never>?)
        /// drop-oldest made room by dropping this many.
        case dropped(UInt64, wake: CheckedContinuation<Void, Never>?)
        /// disconnect: the queue is discarded and the stream ends.
        case disconnected(dropped: UInt64, patterns: [TopicPattern], wake: CheckedContinuation<Void, Never>?)
        /// The stream is already ending; nothing queued.
        case ended
    }

    /// During a batch of many slices a parked writer is woken once this much
    /// is queued for it, or at the batch's end: one wake and one write per
    /// batch-sized run, not one per slice (a slice reaching 1,000
    /// subscribers carries 16 messages).
    static let deferredWakeBytes = 32 * 1024
    static let deferredWakeMessages = 256
    /// A waiter left asleep by `enqueue(deferringWake: true)`, to be woken
    /// at the batch's end.
    var wakeDeferred = false

    /// Appends `message`, applying the overflow policy when a bound is hit.
    /// With `deferringWake`, a parked writer is woken only once a
    /// batch-sized run is queued (`deferredWakeBytes`).
    /// `newlyDeferred` is set when this call left the writer asleep for the
    /// first time since it was last woken.
    func enqueue(
        _ message: StoredMessage, settings: BrokerSettings, deferringWake: Bool = false, newlyDeferred: inout Bool
    ) -> EnqueueOutcome {
        guard end == nil else { return .ended }
        let cost = message.costBytes
        var droppedNow: UInt64 = 0
        if messages.count >= settings.subscriberQueueMessagesMax || bytes + cost > settings.subscriberQueueBytesMax {
            switch overflow {
            case .disconnect:
                end = "slow consumer: more than \(settings.subscriberQueueMessagesMax) messages or \(settings.subscriberQueueBytesMax) bytes were waiting; reconnect with Last-Event-ID to resume"
                let count = UInt64(messages.count)
                droppedTotal += count
                messages.removeAll()
                bytes = 0
                dequeuedTotal += count
                return .disconnected(dropped: count, patterns: patterns, wake: takeWaiter())
            case .dropOldest:
                while !messages.isEmpty
                    && (messages.count >= settings.subscriberQueueMessagesMax || bytes + cost > settings.subscriberQueueBytesMax)
                {
                    let dropped = messages.removeFirst()
                    bytes -= dropped.costBytes
                    droppedNow += 1
                }
                lost += droppedNow
                droppedTotal += droppedNow
            }
        }
        messages.append(message)
        bytes += cost
        enqueuedTotal += 1
        dequeuedTotal += droppedNow
        if let position = message.id.position { lastPosition = position }
        let wake: CheckedContinuation<Void, Never>?
        if deferringWake, waiter != nil, bytes < Self.deferredWakeBytes, messages.count < Self.deferredWakeMessages {
            newlyDeferred = !wakeDeferred
            wakeDeferred = true
            wake = nil
        } else {
            wakeDeferred = false
            wake = takeWaiter()
        }
        return droppedNow > 0 ? .dropped(droppedNow, wake: wake) : .queued(wake: wake)
    }

    /// The waiter `enqueue(deferringWake: true)` left asleep, if any.
    func takeDeferredWaiter() -> CheckedContinuation<Void, Never>? {
        guard wakeDeferred else { return nil }
        wakeDeferred = false
        return takeWaiter()
    }

    /// Takes what is ready: the gap count, messages up to `maxBytes` (at
    /// least one), the end once nothing else is left, a due heartbeat.
    func take(maxBytes: Int) -> SubscriptionBatch {
        var batch = SubscriptionBatch()
        batch.lost = lost
        lost = 0
        // Messages queued before the first pending view record go first.
        let beforeView = views.first.map { Int(clamping: $0.after &- dequeuedTotal) } ?? .max
        if beforeView < messages.count {
            var taken = 0
            while let first = messages.first, batch.messages.count < beforeView,
                batch.messages.isEmpty || taken + first.costBytes <= maxBytes
            {
                messages.removeFirst()
                taken += first.costBytes
                bytes -= first.costBytes
                batch.messages.append(first)
            }
        } else if bytes <= maxBytes {
            batch.messages = Array(messages)
            messages.removeAll(keepingCapacity: true)
            bytes = 0
        } else {
            var taken = 0
            while let first = messages.first, batch.messages.isEmpty || taken + first.costBytes <= maxBytes {
                messages.removeFirst()
                taken += first.costBytes
                bytes -= first.costBytes
                batch.messages.append(first)
            }
        }
        dequeuedTotal += UInt64(batch.messages.count)
        while let view = views.first, view.after <= dequeuedTotal {
            views.removeFirst()
            batch.views.append(view.record)
        }
        if batch.messages.isEmpty, batch.lost == 0, batch.views.isEmpty, let end { batch.end = end }
        batch.heartbeat = heartbeatDue && batch.messages.isEmpty && batch.lost == 0 && batch.views.isEmpty
        heartbeatDue = false
        batch.more = !messages.isEmpty || replay != nil
        delivered += UInt64(batch.messages.count)
        return batch
    }

    private func takeWaiter() -> CheckedContinuation<Void, Never>? {
        wakeDeferred = false
        defer { waiter = nil }
        return waiter
    }
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
    /// The `view` records the stream starts with (one per pattern); later
    /// changes arrive in batches.
    public func initialViews() -> [ControlRecord] {
        broker.initialViews(id, patterns: patterns)
    }

    /// Ends the stream: its writer sends what is queued, then an `end`
    /// record with `reason`.
    public func end(reason: String) {
        broker.end(id, reason: reason)
    }

    public func cancel(reason: String = "unsubscribed") {
        broker.unsubscribe(id, reason: reason)
    }

    deinit {
        broker.unsubscribe(id, reason: "released")
    }
}
