import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics
import PiglixWire

/// Coordinator/cohort work queues (docs/patterns.md, "Work queues").
///
/// Every node keeps one `QueueTable` and feeds it, in the agreed order:
/// the join, leave and ack records (multicast `total` to the internal group
/// `$piglix.queues`), the `total`/`safe` messages of every topic, and the
/// cluster views (`clusterViewInstalled`, in the core's effect order). The
/// table says which member holds which message; a node sends what is
/// assigned to its own members. On a single node the same table runs on
/// the broker's own publishes, acks and streams.
///
/// The table is the cluster's replicated state: every node is a member of
/// `$piglix.queues` (joined at start, after `$piglix.idempotence`), whose
/// checkpoint is the provider's table, unacked payloads included, at the
/// cut. Until that transfer completes, a node records the queue events it
/// delivers and replays those the cut does not cover on the checkpoint; it
/// refuses queue subscriptions and acks meanwhile (503).
extension Broker {
    /// The cluster-internal group of the work queue table.
    public static var queuesPattern: TopicPattern { ClusterSettings.queuesPattern }

    /// The process a single node's members belong to.
    static let singleNodeProcess = ProcessID(node: NodeID(0), incarnation: 0)

    /// A queue name: 1 to 128 bytes of `[A-Za-z0-9._:-]`.
    public static func validateQueueName(_ name: String) throws(SubscribeError) {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count <= 128 else {
            throw .invalidQueue("queue name must be 1 to 128 bytes, not \(bytes.count)")
        }
        for (i, b) in bytes.enumerated() {
            let ok =
                (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_")
                || b == UInt8(ascii: ":") || b == UInt8(ascii: "-")
            if !ok { throw .invalidQueue("queue name byte \(i + 1) is not one of A-Z a-z 0-9 . _ : -") }
        }
    }

    // MARK: Joining

    /// Opens a work queue stream: the subscription becomes a member of
    /// queue `name` on `pattern` once its join is delivered in the agreed
    /// order (at once on a single node). It receives only what the table
    /// assigns it; its stream has no resume and no replay (unacked messages
    /// are redelivered instead).
    public func openQueue(name: String, pattern: TopicPattern, overflow: OverflowPolicy) async throws(SubscribeError) -> Subscription {
        try Self.validateQueueName(name)
        guard let cluster else {
            return try state.withLock { state throws(SubscribeError) -> Subscription in
                let id = try addQueueSubscription(name: name, pattern: pattern, state: &state)
                let member = QueueMember(process: Self.singleNodeProcess, local: id.rawValue)
                var wake: [CheckedContinuation<Void, Never>] = []
                let effects = state.queueTable.join(queue: name, pattern: pattern, member: member)
                for case .refuseJoin(_, let m, let reason) in effects where m == member {
                    state.queues[id] = nil
                    throw .queueRefused(reason)
                }
                applyQueueEffects(effects, state: &state, wake: &wake)
                for w in wake { w.resume() }
                return Subscription(id: id, patterns: [pattern], newestRetained: nil, broker: self)
            }
        }
        // The table must be complete here before a member joins from here.
        var waited = 0
        while !state.withLock({ $0.queuesReady }) {
            if waited >= 100 || isShuttingDown {
                throw .unavailable("this node has not yet received the cluster's work queue state (state transfer); retry in a moment")
            }
            waited += 1
            try? await Task.sleep(for: .milliseconds(50))
        }
        let id = try state.withLock { state throws(SubscribeError) in try addQueueSubscription(name: name, pattern: pattern, state: &state) }
        let control = QueueControl.join(queue: name, pattern: pattern.name, local: id.rawValue)
        let outcome = await publishControl(control, on: cluster)
        switch outcome {
        case .acked:
            let refused = state.withLock { $0.queueJoinRefusals.removeValue(forKey: id) }
            if let refused {
                unsubscribeQuietly(id)
                throw .queueRefused(refused)
            }
            return Subscription(id: id, patterns: [pattern], newestRetained: nil, broker: self)
        case .refused(let why):
            unsubscribeQuietly(id)
            throw .unavailable(why.description)
        case .failed:
            unsubscribeQuietly(id)
            throw .unavailable("this node left the primary component while joining the queue; subscribe again")
        }
    }

    private func addQueueSubscription(name: String, pattern: TopicPattern, state: inout State) throws(SubscribeError) -> SubscriptionID {
        if state.closed { throw .shuttingDown }
        if state.queues.count >= settings.subscriptionsMax { throw .tooManySubscriptions(max: settings.subscriptionsMax) }
        if let existing = state.queueTable.pattern(of: name), existing != pattern {
            throw .queueRefused("queue \(name) exists on pattern \(existing.name), not \(pattern.name)")
        }
        let id = SubscriptionID(rawValue: state.nextSubscription)
        state.nextSubscription += 1
        // A member's stream never drops a message silently: past its bounds
        // it ends, and what it held goes to the next member.
        let queue = SubscriberQueue(patterns: [pattern], overflow: .disconnect)
        queue.workQueue = name
        state.queues[id] = queue
        return id
    }

    /// Drops a queue subscription that never became a member.
    private func unsubscribeQuietly(_ id: SubscriptionID) {
        _ = state.withLock { $0.queues.removeValue(forKey: id) }
    }

    /// A queue subscription's stream closed: it leaves its queue, and what
    /// it held goes to the next-ranked member (single node: now; cluster:
    /// when the leave record is delivered).
    func leaveQueue(_ name: String, id: SubscriptionID, state: inout State, wake: inout [CheckedContinuation<Void, Never>]) -> QueueControl? {
        guard cluster != nil else {
            let member = QueueMember(process: Self.singleNodeProcess, local: id.rawValue)
            applyQueueEffects(state.queueTable.leave(queue: name, member: member), state: &state, wake: &wake)
            return nil
        }
        return .leave(queue: name, local: id.rawValue)
    }

    /// Multicasts a control record at `total` to `$piglix.queues` and waits
    /// for its outcome here.
    func publishControl(_ control: QueueControl, on cluster: any GroupLayer) async -> ClusterPublishOutcome {
        await withCheckedContinuation { continuation in
            cluster.publish(
                [ClusterPublish(destination: .group(Self.queuesPattern), level: .total, session: 0, payload: control.encode())]
            ) { outcomes in continuation.resume(returning: outcomes.first ?? .failed(.leftCluster)) }
        }
    }

    // MARK: Acks

    /// `POST /v1/ack`: acks `ids` of queue `name`; one result per id. Any
    /// client may ack any id (docs/patterns.md): the message is dropped
    /// from the queue whoever holds it.
    public func ack(queue name: String, ids: [String]) async throws(AckError) -> [QueueAckResult] {
        do { try Self.validateQueueName(name) } catch { throw .invalid(error.description) }
        var keys: [QueueMessageKey?] = []
        keys.reserveCapacity(ids.count)
        for (i, text) in ids.enumerated() {
            guard let id = PiglixWire.MessageID(text) else {
                throw .invalid("ids[\(i)] \(text.prefix(64)) is not a message id of a queue record")
            }
            keys.append(queueKey(of: id))
        }
        let known = keys.compactMap { $0 }
        guard let cluster else {
            return state.withLock { state in
                if state.closed { return keys.map { _ in .unknown } }
                var wake: [CheckedContinuation<Void, Never>] = []
                let (results, effects) = state.queueTable.ack(queue: name, keys: known)
                state.queueCounters.acked += UInt64(results.filter { $0 == .acked }.count)
                applyQueueEffects(effects, state: &state, wake: &wake)
                defer { for w in wake { w.resume() } }
                var next = results.makeIterator()
                return keys.map { $0 == nil ? .unknown : next.next()! }
            }
        }
        guard state.withLock({ $0.queuesReady }) else {
            throw .unavailable("this node has not yet received the cluster's work queue state (state transfer); retry in a moment")
        }
        if known.isEmpty { return keys.map { _ in .unknown } }
        switch await publishControl(.ack(queue: name, keys: known), on: cluster) {
        case .acked(_, _, let publish):
            guard let results = state.withLock({ $0.queueAcks.removeValue(forKey: publish) }) else {
                throw .unavailable("the ack was delivered but its answer was lost (this node rejoined the cluster); ack again")
            }
            var next = results.makeIterator()
            return keys.map { $0 == nil ? .unknown : next.next()! }
        case .refused(let why):
            throw .unavailable(why.description)
        case .failed:
            throw .unavailable("this node left the primary component before the ack was delivered; it may or may not have taken effect: ack again")
        }
    }

    /// The table key an id names: single node `<epoch>-<n>` of this run;
    /// cluster the agreed id `v<view>.0….<seq>` (`MessageSource.agreedID`).
    func queueKey(of id: PiglixWire.MessageID) -> QueueMessageKey? {
        if let position = id.position {
            guard cluster != nil, let seq = position.delivered.last, seq > 0,
                position.delivered.dropLast().allSatisfy({ $0 == 0 })
            else { return nil }
            return QueueMessageKey(view: position.view, origin: UInt32(position.delivered.count - 1), seq: seq)
        }
        guard cluster == nil, id.epoch == epoch else { return nil }
        return QueueMessageKey(view: 0, origin: 0, seq: id.sequence)
    }

    /// The pattern of queue `name` in this node's table, nil if unknown.
    public func queuePattern(of name: String) -> TopicPattern? {
        state.withLock { $0.queueTable.pattern(of: name) }
    }

    // MARK: Effects

    /// Carries out the table's effects for this node's members: an
    /// assignment is queued on the member's stream, a refused join ends it.
    func applyQueueEffects(_ effects: [QueueEffect<StoredMessage>], state: inout State, wake: inout [CheckedContinuation<Void, Never>]) {
        let me = cluster == nil ? Self.singleNodeProcess : state.queueMe
        for effect in effects {
            switch effect {
            case .assign(let queue, let member, _, let payload, let redelivered):
                if redelivered { state.queueCounters.redelivered += 1 }
                guard member.process == me else { continue }
                var message = payload
                message.queue = queue
                message.redelivered = redelivered
                // A member whose stream closed is gone here; its leave
                // record hands the message on.
                Self.enqueue(message, for: SubscriptionID(rawValue: member.local), state: &state, settings: settings, wake: &wake)
            case .refuseJoin(_, let member, let reason):
                guard member.process == me else { continue }
                let id = SubscriptionID(rawValue: member.local)
                state.queueJoinRefusals[id] = reason
                if let queue = state.queues[id] {
                    queue.end = reason
                    if let w = queue.waiter {
                        queue.waiter = nil
                        wake.append(w)
                    }
                }
            case .overflow(let queue, let key):
                state.queueCounters.overflowed += 1
                if state.queueCounters.overflowed.isMultiple(of: 1000) || state.queueCounters.overflowed == 1 {
                    logger.warning(
                        "work queue \(queue) holds its limit of \(settings.queues.unackedPerQueueMax) unacked messages; message \(key) was not queued (piglix_queue_overflow_total)"
                    )
                }
            }
        }
    }

    /// Single node: a published message reaches the queues its topic
    /// matches (every level: one node's order is total).
    func queueLocally(_ message: StoredMessage, topic: Topic, state: inout State, wake: inout [CheckedContinuation<Void, Never>]) {
        guard !state.queueTable.isEmpty else { return }
        let key = QueueMessageKey(view: 0, origin: 0, seq: message.id.sequence)
        applyQueueEffects(state.queueTable.deliver(key: key, topic: topic, payload: message), state: &state, wake: &wake)
    }

    /// Work queue counters for `/metrics`.
    public var queueStats: QueueStats {
        state.withLock { state in
            var unacked = 0
            var backlog = 0
            var members = 0
            for name in state.queueTable.queueNames {
                unacked += state.queueTable.unackedCount(of: name)
                backlog += state.queueTable.backlogCount(of: name)
                members += state.queueTable.members(of: name).count
            }
            return QueueStats(
                queues: state.queueTable.queueCount, members: members, unacked: unacked, backlog: backlog,
                acked: state.queueCounters.acked, redelivered: state.queueCounters.redelivered, overflowed: state.queueCounters.overflowed)
        }
    }
}

/// Why an ack was refused.
public enum AckError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)
    case unavailable(String)
    public var status: Int {
        switch self {
        case .invalid: return 400
        case .unavailable: return 503
        }
    }
    public var description: String {
        switch self {
        case .invalid(let why), .unavailable(let why): return why
        }
    }
}

/// `/metrics`: `piglix_queue_*`.
public struct QueueStats: Sendable {
    public var queues: Int
    public var members: Int
    public var unacked: Int
    public var backlog: Int
    public var acked: UInt64
    public var redelivered: UInt64
    public var overflowed: UInt64
}

struct QueueCounters {
    var acked: UInt64 = 0
    var redelivered: UInt64 = 0
    var overflowed: UInt64 = 0
}

/// A queue control record, the payload of a `total` multicast to
/// `$piglix.queues`: `u8 kind` (1 join, 2 leave, 3 ack), `u16`-prefixed
/// queue name, then for a join the `u16`-prefixed pattern and `u64` local
/// member id, for a leave the `u64` local id, for an ack `u32 n` and `n`
/// keys (`u64 view`, `u32 origin`, `u64 seq`). The member's process is the
/// record's origin.
///
/// Public only so that the fuzz package (`Fuzz/`, target `FuzzTables`)
/// can feed `decode` the bytes a peer could send; not an API for clients.
public enum QueueControl: Sendable, Equatable {
    case join(queue: String, pattern: String, local: UInt64)
    case leave(queue: String, local: UInt64)
    case ack(queue: String, keys: [QueueMessageKey])

    public func encode() -> [UInt8] {
        var b = ByteBuffer()
        func string(_ s: String) {
            b.writeInteger(UInt16(truncatingIfNeeded: s.utf8.count))
            b.writeString(s)
        }
        switch self {
        case .join(let queue, let pattern, let local):
            b.writeInteger(UInt8(1))
            string(queue)
            string(pattern)
            b.writeInteger(local)
        case .leave(let queue, let local):
            b.writeInteger(UInt8(2))
            string(queue)
            b.writeInteger(local)
        case .ack(let queue, let keys):
            b.writeInteger(UInt8(3))
            string(queue)
            b.writeInteger(UInt32(keys.count))
            for k in keys {
                b.writeInteger(k.view)
                b.writeInteger(k.origin)
                b.writeInteger(k.seq)
            }
        }
        return Array(b.readableBytesView)
    }

    /// Nil for bytes that are not a control record (a peer's payload on
    /// `$piglix.queues`: untrusted).
    public static func decode(_ bytes: [UInt8]) -> QueueControl? {
        var b = ByteBuffer(bytes: bytes)
        func string() -> String? {
            guard let n: UInt16 = b.readInteger() else { return nil }
            return b.readString(length: Int(n))
        }
        guard let kind: UInt8 = b.readInteger(), let queue = string() else { return nil }
        switch kind {
        case 1:
            guard let pattern = string(), let local: UInt64 = b.readInteger() else { return nil }
            return .join(queue: queue, pattern: pattern, local: local)
        case 2:
            guard let local: UInt64 = b.readInteger() else { return nil }
            return .leave(queue: queue, local: local)
        case 3:
            guard let n: UInt32 = b.readInteger(), Int(n) <= b.readableBytes / 20 else { return nil }
            var keys: [QueueMessageKey] = []
            for _ in 0..<n {
                guard let v: UInt64 = b.readInteger(), let o: UInt32 = b.readInteger(), let s: UInt64 = b.readInteger() else { return nil }
                keys.append(QueueMessageKey(view: v, origin: o, seq: s))
            }
            return .ack(queue: queue, keys: keys)
        default:
            return nil
        }
    }
}
