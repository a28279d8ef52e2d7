import DequeModule
import Logging
import PiglixCluster
import PiglixGroups
import NIOCore
import PiglixTopics
import PiglixWire
import Synchronization

/// Why a publish was refused.
public enum PublishError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidTopic(TopicError)
    case reservedTopic(String)
    case tooLarge(bytes: Int, max: Int)
    case invalidHeaders(String)
    case shuttingDown
    /// Cluster: this node is outside the primary component, or its pending
    /// queue is full (flow control); try again later (`503`, `Retry-After`).
    case unavailable(String)
    /// Cluster: the node lost the primary component before the message
    /// reached its level; it may or may not have been delivered (`503`).
    case outcomeUnknown(String)
    /// Idempotent publish: the sequence number is older than its producer's
    /// window and not remembered; it may have been delivered (`409`).
    case sequenceTooOld(String)

    /// The HTTP status this maps to.
    public var status: Int {
        switch self {
        case .invalidTopic, .reservedTopic, .invalidHeaders: return 400
        case .tooLarge: return 413
        case .sequenceTooOld: return 409
        case .shuttingDown, .unavailable, .outcomeUnknown: return 503
        }
    }

    public var description: String {
        switch self {
        case .unavailable(let why), .outcomeUnknown(let why), .sequenceTooOld(let why): return why
        case .invalidTopic(let error): return error.description
        case .reservedTopic(let topic): return "topic \(topic) is reserved for the broker: topics beginning with $ can be subscribed to, not published on"
        case .tooLarge(let bytes, let max): return "message of \(bytes) bytes is over the limit of \(max) bytes"
        case .invalidHeaders(let reason): return reason
        case .shuttingDown: return "the broker is shutting down"
        }
    }
}

/// Why a subscribe was refused.
public enum SubscribeError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidPattern(pattern: String, TopicError)
    case noPatterns
    case tooManyPatterns(count: Int, max: Int)
    case tooManySubscriptions(max: Int)
    case shuttingDown
    /// Work queues: a bad queue name or combination of parameters (400).
    case invalidQueue(String)
    /// Work queues: the table refused the join (another pattern, a limit): 409.
    case queueRefused(String)
    /// Cluster: not now (no primary, state transfer running): 503.
    case unavailable(String)

    public var status: Int {
        switch self {
        case .invalidPattern, .noPatterns, .tooManyPatterns, .invalidQueue: return 400
        case .queueRefused: return 409
        case .tooManySubscriptions: return 429
        case .shuttingDown, .unavailable: return 503
        }
    }

    public var description: String {
        switch self {
        case .invalidPattern(let pattern, let error): return "pattern \(pattern): \(error.description)"
        case .noPatterns: return "give at least one pattern: /v1/subscribe?topic=PATTERN"
        case .tooManyPatterns(let count, let max): return "\(count) patterns in one subscription, the limit is \(max)"
        case .tooManySubscriptions(let max): return "this node holds its limit of \(max) subscriptions; try again later"
        case .shuttingDown: return "the broker is shutting down"
        case .invalidQueue(let why), .queueRefused(let why), .unavailable(let why): return why
        }
    }
}

/// What the publisher gets back.
public struct PublishReceipt: Sendable, Equatable {
    public var id: PiglixWire.MessageID
    public var delivery: DeliveryLevel
    /// An idempotent retry answered with the original's id and level.
    public var duplicate: Bool = false
    /// 200 when the level is reached (`safe`: stable), 202 when accepted.
    public var status: Int { delivery.ackStatus }

    public init(id: PiglixWire.MessageID, delivery: DeliveryLevel, duplicate: Bool = false) {
        self.id = id
        self.delivery = delivery
        self.duplicate = duplicate
    }
}

/// A group as `/v1/groups` shows it: a pattern with local subscribers.
public struct GroupInfo: Sendable {
    public var pattern: String
    public var view: UInt64
    public var members: [String]
    public var localSubscribers: Int
    public var delivered: UInt64
}

/// Counters for `/v1/groups`, `/metrics` and the bench.
public struct BrokerStats: Sendable {
    public var published: UInt64
    public var delivered: UInt64
    public var dropped: UInt64
    public var subscriptions: Int
    public var retainedMessages: Int
    public var retainedBytes: Int
    public var retainedTopics: Int
}

/// The single-node broker: validates and numbers publishes, retains history,
/// matches topics to subscriptions with the pattern trie and fills each
/// subscriber's bounded queue. Publishing never waits for a subscriber.
///
/// Its counters are kept under the same lock and read by `/metrics` at
/// scrape time, so the hot path pays no separate atomic per message.
///
/// All state sits behind one mutex: a publish holds it for one trie lookup
/// and one append per matching subscriber, a writer for one queue swap per batch.
public final class Broker: Sendable {
    public let settings: BrokerSettings
    /// This broker run; the first half of every message id.
    public let epoch: UInt32
    /// The single-node cluster view id (groups derive their view from it).
    public let viewID: UInt64 = 1
    /// The group layer of the cluster this node belongs to; nil for a
    /// single node. Only the broker talks to it (GroupLayer.swift).
    let cluster: (any GroupLayer)?
    let logger = Logger(label: "piglix.broker")

    struct State {
        var sequence: UInt64 = 0
        var trie: PatternTrie<SubscriptionID>
        var queues: [SubscriptionID: SubscriberQueue] = [:]
        var retention: Retention
        var nextSubscription: UInt64 = 1
        var groups: [String: GroupCounters] = [:]
        var published: UInt64 = 0
        var delivered: UInt64 = 0
        var dropped: UInt64 = 0
        var closed = false
        // Cluster (Broker+Cluster.swift)
        /// Local groups whose state transfer is complete.
        var active: Set<TopicPattern> = []
        /// When a checkpoint chunk of a joining group was last applied: a
        /// subscriber keeps waiting for a transfer that makes progress.
        var transferProgress: [TopicPattern: ContinuousClock.Instant] = [:]
        var groupViews: [TopicPattern: (view: UInt64, members: [String])] = [:]
        var clusterStatus: ClusterStatus?
        /// This node's delivery position after the last delivery.
        var position: ClusterPosition?
        /// Subscriptions per pattern (the group is joined while positive).
        var patternSubscribers: [TopicPattern: Int] = [:]
        // Idempotent publish (Broker+Idempotence.swift)
        var idempotence: IdempotenceTable<IdempotentOriginal>
        var duplicatesSuppressed: UInt64 = 0
        var tooOldRefused: UInt64 = 0
        /// Evictions counted by tables a rejoin replaced (the metric is a counter).
        var evictionsBefore: UInt64 = 0
        /// Decisions on this node's own idempotent records, from their
        /// delivery until their ack (cluster).
        var idempotentAcks: [PublishID: IdempotenceDecision<IdempotentOriginal>] = [:]
        /// The idempotence table of a checkpoint being received.
        var incomingTable: [IdempotenceTable<IdempotentOriginal>.ProducerState] = []
        // Locks (Broker+Locks.swift)
        var lock: LockState
        // Work queues (Broker+Queues.swift)
        var queueTable: QueueTable<StoredMessage>
        var queueCounters = QueueCounters()
        /// Cluster: this process (the origin of its own control records).
        var queueMe = ProcessID(node: NodeID(0), incarnation: 0)
        /// Cluster: queue events delivered while the `$piglix.queues`
        /// transfer runs, replayed past the checkpoint's cut.
        var queueBuffer: [QueueEvent] = []
        var queueBufferOverflowed = false
        /// Cluster: the `$piglix.queues` transfer completed (`active`
        /// holds the pattern too; this is the hot path's test).
        var queuesReady = false
        /// Cluster: the skip list of the queue checkpoint being received.
        var queueSkip: Set<PublishID> = []
        /// Cluster: the queue table of a checkpoint being received.
        var incomingQueues: QueueCheckpointAssembly?
        /// Cluster: the messages this node's members held when the queue
        /// table's transfer restarted (`clusterTransferRestarted`); the new
        /// table's others for them are sent when it completes.
        var queueHeldBeforeRestart: Set<QueueHolding>?
        /// Cluster: the answers to this node's ack records, until acked.
        var queueAcks: [PublishID: [QueueAckResult]] = [:]
        /// Joins the table refused, until the joiner reads the reason.
        var queueJoinRefusals: [SubscriptionID: String] = [:]
    }

    struct GroupCounters {
        var subscribers = 0
        var delivered: UInt64 = 0
    }

    let state: Mutex<State>
    /// Cluster: the queue table has a queue (read without the lock by the
    /// publish path, which sends records a queue takes as `total`).
    let queuesExist = Atomic<Bool>(false)

    public init(settings: BrokerSettings, epoch: UInt32? = nil, cluster: (any GroupLayer)? = nil) throws(BrokerSettings.Invalid) {
        try settings.validate()
        self.settings = settings
        self.cluster = cluster
        self.epoch = epoch ?? UInt32.random(in: 1...UInt32.max)
        self.state = Mutex(
            State(
                trie: PatternTrie(cacheCapacity: settings.matchCacheTopicsMax), retention: Retention(settings: settings),
                idempotence: IdempotenceTable(limits: settings.idempotence),
                lock: LockState(table: LockTable(limits: settings.locks.table, firstToken: Self.wallClockFirstToken())),
                queueTable: QueueTable(limits: settings.queues)))
    }

    // MARK: Publish

    /// Validates a record's user headers against the limits. Every publish
    /// path comes through the broker, so no path can store a header an
    /// encoder cannot represent (binary frames carry a u8 count and u16 lengths).
    @inline(__always)
    func check(headers: [MessageHeader]) throws(PublishError) {
        guard !headers.isEmpty else { return }
        do { try settings.headerLimits.check(headers) } catch { throw .invalidHeaders(error.reason) }
    }

    /// Validates a publish without doing it (topic, size, headers).
    public func check(topic name: String, payloadBytes: Int) throws(PublishError) -> Topic {
        let topic: Topic
        do { topic = try Topic(name, limits: settings.topicLimits) } catch { throw .invalidTopic(error) }
        if topic.isReserved { throw .reservedTopic(name) }
        if payloadBytes > settings.messageBytesMax { throw .tooLarge(bytes: payloadBytes, max: settings.messageBytesMax) }
        return topic
    }

    /// The same for a record of a batch, reusing `last` when the record
    /// repeats the previous one's topic: a run of one topic is parsed and
    /// validated once.
    func checkTopic(of record: PublishRecord, after last: inout Topic?) throws(PublishError) -> Topic {
        if let last, last.name == record.topic {
            if record.payload.readableBytes > settings.messageBytesMax {
                throw .tooLarge(bytes: record.payload.readableBytes, max: settings.messageBytesMax)
            }
            return last
        }
        let topic = try check(topic: record.topic, payloadBytes: record.payload.readableBytes)
        last = topic
        return topic
    }

    /// Publishes one message and returns its id once it is queued for every
    /// matching subscriber (on one node every level is reached at once).
    public func publish(_ record: PublishRecord) throws(PublishError) -> PublishReceipt {
        let topic = try check(topic: record.topic, payloadBytes: record.payload.readableBytes)
        try check(headers: record.headers)
        let isText = UTF8Check.isValid(record.payload)
        let level = record.effectiveDelivery
        var wake: [CheckedContinuation<Void, Never>] = []
        let receipt = try state.withLock { state throws(PublishError) -> PublishReceipt in
            if state.closed { throw .shuttingDown }
            if record.producer != nil, let answer = admitLocally(record, level: level, state: &state) { return try answer.get() }
            let message = storeLocally(record, topic: topic, level: level, isText: isText, state: &state)
            for subscriber in state.trie.match(topic) {
                Self.enqueue(message, for: subscriber, state: &state, settings: settings, wake: &wake)
            }
            queueLocally(message, topic: topic, state: &state, wake: &wake)
            return PublishReceipt(id: message.id, delivery: level)
        }
        for continuation in wake { continuation.resume() }
        return receipt
    }

    /// Numbers a local publish and retains it (the single and the batch
    /// paths), under the lock.
    func storeLocally(_ record: PublishRecord, topic: Topic, level: DeliveryLevel, isText: Bool, state: inout State) -> StoredMessage {
        state.sequence += 1
        let message = StoredMessage(
            id: PiglixWire.MessageID(epoch: epoch, sequence: state.sequence), topic: topic.name, payload: record.payload,
            delivery: level, headers: record.headers, payloadIsText: isText)
        state.published += 1
        state.retention.append(message)
        return message
    }

    /// Wakes the writers a batch left asleep (`enqueue(deferringWake:)`).
    static func wakeDeferred(_ ids: [SubscriptionID], state: inout State, wake: inout [CheckedContinuation<Void, Never>]) {
        for id in ids {
            if let waiter = state.queues[id]?.takeDeferredWaiter() { wake.append(waiter) }
        }
    }

    /// Queues `message` for one subscriber and adds its writer, if parked,
    /// to `wake`.
    static func enqueue(
        _ message: StoredMessage, for id: SubscriptionID, state: inout State, settings: BrokerSettings,
        wake: inout [CheckedContinuation<Void, Never>]
    ) {
        _ = enqueue(message, for: id, state: &state, settings: settings, wake: &wake, deferringWake: false)
    }

    /// The same; with `deferringWake` a parked writer is left asleep until a
    /// batch-sized run is queued for it. Returns true when that left it
    /// asleep for the first time, so the batch's end must wake it
    /// (`wakeDeferred`).
    static func enqueue(
        _ message: StoredMessage, for id: SubscriptionID, state: inout State, settings: BrokerSettings,
        wake: inout [CheckedContinuation<Void, Never>], deferringWake: Bool
    ) -> Bool {
        guard let queue = state.queues[id] else { return false }
        return enqueue(message, to: queue, id: id, state: &state, settings: settings, wake: &wake, deferringWake: deferringWake)
    }

    /// The same with the queue already at hand (a batch looks a topic's
    /// subscribers up once, not once per message).
    static func enqueue(
        _ message: StoredMessage, to queue: SubscriberQueue, id: SubscriptionID, state: inout State, settings: BrokerSettings,
        wake: inout [CheckedContinuation<Void, Never>], deferringWake: Bool
    ) -> Bool {
        if let source = message.source, let floor = queue.resumeFloor {
            if floor.covers(source) { return false }
            if source.view > floor.view { queue.resumeFloor = nil }
        }
        var newlyDeferred = false
        let outcome = queue.enqueue(message, settings: settings, deferringWake: deferringWake, newlyDeferred: &newlyDeferred)
        switch outcome {
        case .queued(let waiter):
            if let waiter { wake.append(waiter) }
        case .dropped(let count, let waiter):
            state.dropped += count
            if let waiter { wake.append(waiter) }
        case .disconnected(let count, let patterns, let waiter):
            state.dropped += count
            for pattern in patterns { state.trie.remove(pattern, id) }
            if let waiter { wake.append(waiter) }
        case .ended:
            break
        }
        return newlyDeferred
    }

    // MARK: Subscribe

    /// Parses and validates subscribe patterns.
    public func parsePatterns(_ names: [String]) throws(SubscribeError) -> [TopicPattern] {
        if names.isEmpty { throw .noPatterns }
        if names.count > settings.patternsPerSubscriptionMax {
            throw .tooManyPatterns(count: names.count, max: settings.patternsPerSubscriptionMax)
        }
        var patterns: [TopicPattern] = []
        for name in names {
            do {
                let pattern = try TopicPattern(name, limits: settings.topicLimits)
                if !patterns.contains(pattern) { patterns.append(pattern) }
            } catch {
                throw .invalidPattern(pattern: name, error)
            }
        }
        return patterns
    }

    /// Registers a subscription and, atomically with it, queues the replay
    /// its start position asks for, so nothing is lost or repeated between
    /// history and live traffic.
    public func subscribe(patterns: [TopicPattern], options: SubscriptionOptions) throws(SubscribeError) -> Subscription {
        if patterns.isEmpty { throw .noPatterns }
        let (id, newest) = try state.withLock { state throws(SubscribeError) -> (SubscriptionID, PiglixWire.MessageID?) in
            if state.closed { throw .shuttingDown }
            if state.queues.count >= settings.subscriptionsMax { throw .tooManySubscriptions(max: settings.subscriptionsMax) }
            let id = SubscriptionID(rawValue: state.nextSubscription)
            state.nextSubscription += 1
            let queue = SubscriberQueue(patterns: patterns, overflow: options.overflow)
            switch options.start {
            case .live: break
            case .earliest: queue.replay = ReplayCursor(after: 0)
            // An id from another broker run: none of its messages is retained here.
            case .after(let resume): queue.replay = ReplayCursor(after: resume.epoch == epoch ? resume.sequence : 0)
            }
            let newest = state.retention.newest(patterns: patterns)
            state.queues[id] = queue
            for pattern in patterns { state.groups[pattern.name, default: GroupCounters()].subscribers += 1 }
            Self.replayOrGoLive(id, state: &state, settings: settings)
            return (id, newest)
        }
        return Subscription(id: id, patterns: patterns, newestRetained: newest, broker: self)
    }

    func unsubscribe(_ id: SubscriptionID, reason: String) {
        var wake: [CheckedContinuation<Void, Never>] = []
        var control: QueueControl?
        let (leave, waiter, registered) = state.withLock {
            state -> ([TopicPattern], CheckedContinuation<Void, Never>?, CheckedContinuation<Void, Never>?) in
            guard let queue = state.queues.removeValue(forKey: id) else { return ([], nil, nil) }
            if let name = queue.workQueue {
                state.queueJoinRefusals[id] = nil
                control = leaveQueue(name, id: id, state: &state, wake: &wake)
                let waiter = queue.waiter
                queue.waiter = nil
                return ([], waiter, nil)
            }
            var leave: [TopicPattern] = []
            for pattern in queue.patterns {
                state.trie.remove(pattern, id)
                state.groups[pattern.name]?.subscribers -= 1
                if state.groups[pattern.name]?.subscribers == 0 { state.groups[pattern.name] = nil }
                if cluster != nil {
                    state.patternSubscribers[pattern, default: 1] -= 1
                    if state.patternSubscribers[pattern] == 0 {
                        state.patternSubscribers[pattern] = nil
                        state.active.remove(pattern)
                        state.groupViews[pattern] = nil
                        leave.append(pattern)
                    }
                }
            }
            let waiter = queue.waiter
            queue.waiter = nil
            let registered = queue.registered
            queue.registered = nil
            return (leave, waiter, registered)
        }
        waiter?.resume()
        registered?.resume()
        for w in wake { w.resume() }
        for pattern in leave { cluster?.leave(pattern) }
        if let control, let cluster {
            // Fire and forget: if it cannot be delivered, this node is
            // leaving the primary view, and the view change removes the member.
            cluster.publish(
                [ClusterPublish(destination: .group(Self.queuesPattern), level: .total, session: 0, payload: control.encode())]
            ) { [logger] outcomes in
                if case .refused(let why)? = outcomes.first {
                    logger.warning("the leave record of a queue member was refused (\(why)); the next view change removes it")
                }
            }
        }
    }

    func waitReady(_ id: SubscriptionID) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    guard let queue = state.queues[id], !queue.isReady, !Task.isCancelled else { return true }
                    queue.waiter = continuation
                    queue.wakeDeferred = false
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                let waiter = state.queues[id]?.waiter
                state.queues[id]?.waiter = nil
                return waiter
            }
            waiter?.resume()
        }
    }

    /// Messages waiting in a subscription's queue (tests, metrics).
    public func queuedMessages(_ id: SubscriptionID) -> Int {
        state.withLock { $0.queues[id]?.messages.count ?? 0 }
    }

    func hasQueued(_ id: SubscriptionID, bytes: Int) -> Bool {
        state.withLock { ($0.queues[id]?.bytes ?? .max) >= bytes }
    }

    /// A replaying subscription reads the next part of retention into the
    /// room its queue has (at most 4,096 messages per lock hold); one that
    /// has caught up joins the live trie, in the same lock hold, so nothing
    /// published meanwhile is lost or repeated. Live at once without a replay.
    static func replayOrGoLive(_ id: SubscriptionID, state: inout State, settings: BrokerSettings) {
        guard let queue = state.queues.removeValue(forKey: id) else { return }
        defer { state.queues[id] = queue }
        guard var cursor = queue.replay else {
            for pattern in queue.patterns { state.trie.insert(pattern, id) }
            return
        }
        let room = settings.subscriberQueueMessagesMax - queue.messages.count
        let roomBytes = settings.subscriberQueueBytesMax - queue.bytes
        guard room > 0, roomBytes > 0, queue.end == nil else { return }
        let floor = cursor.notCoveredBy
        let step = state.retention.replayStep(
            patterns: queue.patterns, after: cursor.after, count: min(room, 4096), bytes: roomBytes,
            keep: { m in floor.flatMap { f in m.source.map { !f.covers($0) } } ?? true })
        for message in step.messages {
            queue.messages.append(message)
            queue.bytes += message.costBytes
            queue.enqueuedTotal += 1
            if let position = message.id.position { queue.lastPosition = position }
        }
        cursor.after = step.through
        if step.caughtUp {
            queue.replay = nil
            for pattern in queue.patterns { state.trie.insert(pattern, id) }
        } else {
            queue.replay = cursor
        }
    }

    func take(_ id: SubscriptionID, maxBytes: Int) -> SubscriptionBatch {
        state.withLock { state -> SubscriptionBatch in
            guard let batch = state.queues[id]?.take(maxBytes: maxBytes) else {
                return SubscriptionBatch(end: "unsubscribed")
            }
            if state.queues[id]?.replay != nil { Self.replayOrGoLive(id, state: &state, settings: settings) }
            let count = UInt64(batch.messages.count)
            if count > 0 {
                state.delivered += count
                for pattern in state.queues[id]!.patterns { state.groups[pattern.name]?.delivered += count }
            }
            return batch
        }
    }

    // MARK: Heartbeats and shutdown

    /// Marks every subscription idle since the last call as due a heartbeat
    /// and wakes its writer. Call once per heartbeat interval.
    public func heartbeatTick() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var waiters: [CheckedContinuation<Void, Never>] = []
            for id in Array(state.queues.keys) {
                guard let waiter = state.queues[id]?.waiter else { continue }
                state.queues[id]!.heartbeatDue = true
                state.queues[id]!.waiter = nil
                waiters.append(waiter)
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Ends one subscription with `reason` (its token expired, say).
    public func end(_ id: SubscriptionID, reason: String) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.queues[id] != nil else { return nil }
            state.queues[id]!.end = reason
            let waiter = state.queues[id]!.waiter
            state.queues[id]!.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Refuses new work and ends every subscription with `reason`; writers
    /// send their `end` record and finish their streams.
    public func shutdown(reason: String = "the server is shutting down") {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.closed = true
            // Lock streams end too; in a cluster the view without this node
            // passes its locks on.
            endLocalLocks(reason: reason, orphan: false, state: &state)
            state.lock.leaseTask?.cancel()
            var waiters: [CheckedContinuation<Void, Never>] = []
            for id in Array(state.queues.keys) {
                state.queues[id]!.end = reason
                if let waiter = state.queues[id]!.waiter { waiters.append(waiter) }
                state.queues[id]!.waiter = nil
                if let registered = state.queues[id]!.registered { waiters.append(registered) }
                state.queues[id]!.registered = nil
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var isShuttingDown: Bool { state.withLock { $0.closed } }

    // MARK: Introspection

    public var subscriptionCount: Int { state.withLock { $0.queues.count } }

    public var stats: BrokerStats {
        state.withLock { state in
            BrokerStats(
                published: state.published, delivered: state.delivered, dropped: state.dropped,
                subscriptions: state.queues.count, retainedMessages: state.retention.messageCount,
                retainedBytes: state.retention.bytes, retainedTopics: state.retention.topics.count)
        }
    }

    public var groups: [GroupInfo] {
        state.withLock { state in
            state.groups.map { pattern, counters in
                var view = viewID
                var members = [settings.nodeID]
                if cluster != nil {
                    let group = (try? TopicPattern(pattern, limits: settings.topicLimits)).flatMap { state.groupViews[$0] }
                    view = group?.view ?? 0
                    members = group?.members ?? []
                }
                return GroupInfo(
                    pattern: pattern, view: view, members: members, localSubscribers: counters.subscribers,
                    delivered: counters.delivered)
            }.sorted { $0.pattern < $1.pattern }
        }
    }
}
