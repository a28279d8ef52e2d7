import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics
import PiglixWire

/// A queue event delivered while this node's `$piglix.queues` transfer
/// runs: replayed after the checkpoint when its cut does not cover it.
enum QueueEvent {
    case control(QueueControl, origin: ProcessID, source: MessageSource, publish: PublishID)
    /// A `total`/`safe` topic message; an idempotent one is replayed only if
    /// it was the original: as its live delivery decided (`decided`), or as
    /// the (then complete) idempotence table remembers it.
    case work(MessageSource, Topic, StoredMessage, idempotence: (producer: String, sequence: UInt64)?, publish: PublishID, decided: Bool)
    case view(epoch: UInt64, alive: Set<ProcessID>)
}

extension Broker {
    /// Events kept while a queue transfer runs; past it the node logs an
    /// error and its table may differ from the cluster's
    /// (`piglix_queue_transfer_overflow`, docs/patterns.md).
    static let queueBufferMax = 1 << 20

    // MARK: Deliveries (under the lock, in delivery order)

    /// Feeds one live delivery to the queue table (or to the transfer
    /// buffer). `decided`: the idempotence table's verdict (true for an
    /// ordinary record).
    func queueDelivery(
        _ delivery: Delivery, message: StoredMessage?, idempotence: (producer: String, sequence: UInt64)?, decided: Bool, own: Bool,
        state: inout State, wake: inout [CheckedContinuation<Void, Never>]
    ) {
        let m = delivery.message
        guard case .publish(let destination) = m.kind else { return }
        let buffering = !state.queuesReady
        // The common case, no queue: one test per total/safe delivery.
        if !buffering, case .topic = destination, state.queueTable.isEmpty { return }
        // A message the table's checkpoint already held (its cut covers it,
        // or it is the re-send of one the checkpoint held).
        if !delivery.skippedGroups.isEmpty, delivery.skippedGroups.contains(Self.queuesPattern) { return }
        let source = MessageSource(view: m.id.view.epoch, origin: m.id.origin, seq: m.id.seq)
        switch destination {
        case .group(let g):
            guard g == Self.queuesPattern, let control = QueueControl.decode(m.payload) else { return }
            if own { state.queueMe = m.publish.origin }
            if buffering {
                bufferQueueEvent(.control(control, origin: m.publish.origin, source: source, publish: m.publish), state: &state)
                return
            }
            let results = applyControl(control, origin: m.publish.origin, state: &state, wake: &wake)
            if own, let results { state.queueAcks[m.publish] = results }
        case .topic(let topic):
            guard m.level != .fifo else { return }
            if !buffering && (!decided || state.queueTable.isEmpty || !state.queueTable.hasQueue(matching: topic)) { return }
            guard let work = queueMessage(of: delivery, topic: topic, decoded: message, source: source) else { return }
            if buffering {
                bufferQueueEvent(.work(source, topic, work, idempotence: idempotence, publish: m.publish, decided: decided), state: &state)
                return
            }
            applyQueueEffects(state.queueTable.deliver(key: source.queueKey, topic: topic, payload: work), state: &state, wake: &wake)
        }
    }

    /// The copy of a message a queue keeps: its id is the agreed one, the
    /// same on every node, which the ack names.
    func queueMessage(of delivery: Delivery, topic: Topic, decoded: StoredMessage?, source: MessageSource) -> StoredMessage? {
        var message: StoredMessage
        if let decoded {
            message = decoded
        } else {
            guard let (headers, payload) = ClusterPayload.decode(delivery.message.payload) else { return nil }
            message = StoredMessage(
                id: source.agreedID, topic: topic.name, payload: payload, delivery: delivery.message.level, headers: headers,
                payloadIsText: UTF8Check.isValid(payload), source: source)
        }
        message.id = source.agreedID
        return message
    }

    func bufferQueueEvent(_ event: QueueEvent, state: inout State) {
        guard state.queueBuffer.count < Self.queueBufferMax else {
            if !state.queueBufferOverflowed {
                state.queueBufferOverflowed = true
                logger.error(
                    "more than \(Self.queueBufferMax) work queue events arrived during this node's queue state transfer; its queue table may differ from the cluster's"
                )
            }
            return
        }
        state.queueBuffer.append(event)
    }

    /// Applies a control record; an ack's results.
    @discardableResult
    func applyControl(
        _ control: QueueControl, origin: ProcessID, state: inout State, wake: inout [CheckedContinuation<Void, Never>]
    ) -> [QueueAckResult]? {
        switch control {
        case .join(let queue, let patternName, let local):
            let member = QueueMember(process: origin, local: local)
            guard let pattern = try? TopicPattern(patternName, limits: settings.topicLimits) else { return nil }
            applyQueueEffects(state.queueTable.join(queue: queue, pattern: pattern, member: member), state: &state, wake: &wake)
        case .leave(let queue, let local):
            let member = QueueMember(process: origin, local: local)
            applyQueueEffects(state.queueTable.leave(queue: queue, member: member), state: &state, wake: &wake)
        case .ack(let queue, let keys):
            let (results, effects) = state.queueTable.ack(queue: queue, keys: keys)
            state.queueCounters.acked += UInt64(results.filter { $0 == .acked }.count)
            applyQueueEffects(effects, state: &state, wake: &wake)
            return results
        }
        return nil
    }

    // MARK: Views

    public func clusterViewInstalled(epoch: UInt64, members: [ProcessID], me: ProcessID) {
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            state.queueMe = me
            let alive = Set(members)
            if !state.queuesReady {
                bufferQueueEvent(.view(epoch: epoch, alive: alive), state: &state)
                return
            }
            applyQueueEffects(state.queueTable.viewInstalled(alive), state: &state, wake: &wake)
            queuesExist.store(!state.queueTable.isEmpty, ordering: .relaxed)
        }
        for w in wake { w.resume() }
    }

    /// Rejoining as a new incarnation: the cluster removed this node's
    /// members with its old incarnation; their streams end, and the table
    /// comes again by state transfer.
    func queuesRejoining(state: inout State, wake: inout [CheckedContinuation<Void, Never>]) {
        state.queueTable = QueueTable(limits: settings.queues)
        state.queuesReady = false
        state.queueHeldBeforeRestart = nil
        queuesExist.store(false, ordering: .relaxed)
        state.queueBuffer = []
        state.queueBufferOverflowed = false
        state.incomingQueues = nil
        state.queueSkip = []
        state.queueAcks = [:]
        for (_, queue) in state.queues where queue.workQueue != nil && queue.end == nil {
            queue.end = "this node rejoined the cluster (it was cut off); its queue memberships ended and what they held went to other members: subscribe again"
            if let w = queue.waiter {
                queue.waiter = nil
                wake.append(w)
            }
        }
    }

    // MARK: Checkpoint

    /// The provider's table at this point of the delivery stream, and its
    /// position there (the cut).
    func queueCheckpoint() -> any CheckpointReader {
        state.withLock { state in
            QueueCheckpointReader(states: state.queueTable.snapshot(), cut: state.position ?? ClusterPosition(view: 0, delivered: []))
        }
    }

    /// The table's checkpoint held a message a flush cut (its provider was
    /// excluded after delivering it alone): a survivor's checkpoint will
    /// replace it. Queue events are kept from here for after it, as at a
    /// join; this node's members stay, and keep what they were sent.
    public func clusterTransferRestarted(pattern: TopicPattern) {
        if pattern == Self.locksPattern {
            state.withLock { restartLockTransfer(state: &$0) }
            return
        }
        guard pattern == Self.queuesPattern else { return }
        state.withLock { state in
            if state.queuesReady { state.queueHeldBeforeRestart = Self.localHoldings(state) }
            state.queuesReady = false
            state.queueBuffer = []
            state.queueSkip = []
            state.incomingQueues = nil
            state.active.remove(Self.queuesPattern)
            state.transferProgress[Self.queuesPattern] = .now
        }
    }

    /// The idempotence table holds records the primary never delivered
    /// (their origin was excluded with them, after this node took the table
    /// at a cut covering them): they are no originals, a retry is new.
    public func clusterForgetDeliveries(pattern: TopicPattern, ids: [PiglixGroups.MessageID]) {
        guard pattern == Self.idempotencePattern else { return }
        let sources = Set(ids.map { MessageSource(view: $0.view.epoch, origin: $0.origin, seq: $0.seq) })
        state.withLock { state in state.idempotence.forget { $0.source.map(sources.contains) ?? false } }
    }

    /// The messages this node's queue members hold in its table.
    static func localHoldings(_ state: State) -> Set<QueueHolding> {
        var held: Set<QueueHolding> = []
        for s in state.queueTable.snapshot() {
            for e in s.entries {
                if let h = e.holder, h.process == state.queueMe { held.insert(QueueHolding(queue: s.name, member: h, key: e.key)) }
            }
        }
        return held
    }

    /// After a restarted transfer: what the new table gives this node's
    /// members at its cut that the old one did not is sent to them now.
    func sendNewLocalHoldings(before: Set<QueueHolding>, state: inout State, wake: inout [CheckedContinuation<Void, Never>]) {
        for s in state.queueTable.snapshot() {
            for e in s.entries {
                guard let h = e.holder, h.process == state.queueMe, !before.contains(QueueHolding(queue: s.name, member: h, key: e.key)) else { continue }
                var message = e.payload
                message.queue = s.name
                message.redelivered = e.assignments > 1
                Self.enqueue(message, for: SubscriptionID(rawValue: h.local), state: &state, settings: settings, wake: &wake)
            }
        }
    }

    /// The provider's skip list, kept for the replay of the buffer.
    public func clusterCheckpointSkips(pattern: TopicPattern, skip: [PublishID]) {
        guard pattern == Self.queuesPattern else { return }
        state.withLock { $0.queueSkip = Set(skip) }
    }

    func applyQueueCheckpoint(chunk: [UInt8], first: Bool, last: Bool) -> Bool {
        let decoded: (cut: ClusterPosition, items: [QueueCheckpointItem])?
        do { decoded = try QueueCheckpointCodec.decode(chunk, topicLimits: settings.topicLimits) } catch {
            logger.error("a checkpoint chunk of \(Self.queuesPattern.name) is unreadable (\(error)); asking another member")
            return false
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            if first { state.incomingQueues = QueueCheckpointAssembly() }
            if let decoded {
                state.incomingQueues?.cut = decoded.cut
                state.incomingQueues?.add(decoded.items)
            }
            guard last else {
                state.transferProgress[Self.queuesPattern] = .now
                return
            }
            let assembly = state.incomingQueues ?? QueueCheckpointAssembly()
            state.incomingQueues = nil
            state.queueTable = QueueTable(limits: settings.queues, restoring: assembly.states)
            if let before = state.queueHeldBeforeRestart {
                // Taken again: what the primary's table gives this node's
                // members and the old one did not, before the replay.
                state.queueHeldBeforeRestart = nil
                sendNewLocalHoldings(before: before, state: &state, wake: &wake)
            }
            state.active.insert(Self.queuesPattern)
            state.queuesReady = true
            state.transferProgress[Self.queuesPattern] = nil
            // Then what this node delivered past the cut, in its order: the
            // result is the provider's table after the same deliveries.
            let events = state.queueBuffer
            state.queueBuffer = []
            // Re-sends of messages the provider's table already holds (a
            // flush cut them after its checkpoint took them): skipped.
            var skip = state.queueSkip
            state.queueSkip = []
            for event in events {
                switch event {
                case .control(let control, let origin, let source, let publish):
                    if let cut = assembly.cut, cut.covers(source) { continue }
                    if !skip.isEmpty, skip.remove(publish) != nil { continue }
                    applyControl(control, origin: origin, state: &state, wake: &wake)
                case .work(let source, let topic, let message, let idempotence, let publish, let decided):
                    if let cut = assembly.cut, cut.covers(source) { continue }
                    if !skip.isEmpty, skip.remove(publish) != nil { continue }
                    // Not `lookup`: the producer's window may have moved
                    // past the record since its live delivery admitted it
                    // (simulator seed 2034381).
                    if !decided, let (producer, sequence) = idempotence {
                        guard state.idempotence.remembered(producer: producer, sequence: sequence)?.source == source else { continue }
                    }
                    applyQueueEffects(
                        state.queueTable.deliver(key: source.queueKey, topic: topic, payload: message), state: &state, wake: &wake)
                case .view(let epoch, let alive):
                    if let cut = assembly.cut, cut.view >= epoch { continue }
                    applyQueueEffects(state.queueTable.viewInstalled(alive), state: &state, wake: &wake)
                }
            }
            queuesExist.store(!state.queueTable.isEmpty, ordering: .relaxed)
        }
        for w in wake { w.resume() }
        return true
    }
}

/// A message a queue member holds (unacked, assigned to it).
struct QueueHolding: Hashable {
    var queue: String
    var member: QueueMember
    var key: QueueMessageKey
}

extension MessageSource {
    var queueKey: QueueMessageKey { QueueMessageKey(view: view, origin: origin, seq: seq) }
}

// MARK: The checkpoint's format

/// One item of a `$piglix.queues` checkpoint chunk. Public, with
/// `QueueCheckpointCodec`, only for the fuzz package (`Fuzz/`,
/// target `FuzzTables`); not an API for clients.
public enum QueueCheckpointItem: Sendable {
    /// A queue's members, rotation counter and backlog; its entries follow.
    case queue(name: String, pattern: TopicPattern, members: [QueueMember], counter: UInt64, backlog: [QueueMessageKey])
    case entry(queue: String, QueueTable<StoredMessage>.Entry)
}

/// A checkpoint of `$piglix.queues` being received.
struct QueueCheckpointAssembly {
    var cut: ClusterPosition?
    var states: [QueueTable<StoredMessage>.QueueState] = []

    mutating func add(_ items: [QueueCheckpointItem]) {
        for item in items {
            switch item {
            case .queue(let name, let pattern, let members, let counter, let backlog):
                states.append(.init(name: name, pattern: pattern, members: members, counter: counter, entries: [], backlog: backlog))
            case .entry(let queue, let entry):
                if let i = states.lastIndex(where: { $0.name == queue }) { states[i].entries.append(entry) }
            }
        }
    }
}

/// Chunks of the table: `u8 0x51`, the cut (`u64 view`, `u32 n`, `n × u64`),
/// `u32 items`, each item `u8 1` queue (`string name`, `string pattern`,
/// `u32 members` × (`u64 node`, `u64 incarnation`, `u64 local`), `u64
/// counter`, `u32 backlog` × key) or `u8 2` entry (`string queue`, key,
/// `u8 held` [member], `u32 assignments`, `u32 length` + one message in
/// `CheckpointCodec`'s format). A key is `u64 view`, `u32 origin`, `u64 seq`.
///
/// Public only so that the fuzz package (`Fuzz/`, target `FuzzTables`) can
/// feed `decode` the chunks a peer could send; not an API for clients.
public enum QueueCheckpointCodec {
    static let marker: UInt8 = 0x51

    public static func encode(_ items: ArraySlice<QueueCheckpointItem>, cut: ClusterPosition) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(marker)
        b.writeInteger(cut.view)
        b.writeInteger(UInt32(cut.delivered.count))
        for d in cut.delivered { b.writeInteger(d) }
        b.writeInteger(UInt32(items.count))
        func string(_ s: String) {
            b.writeInteger(UInt16(truncatingIfNeeded: s.utf8.count))
            b.writeString(s)
        }
        func key(_ k: QueueMessageKey) {
            b.writeInteger(k.view)
            b.writeInteger(k.origin)
            b.writeInteger(k.seq)
        }
        func member(_ m: QueueMember) {
            b.writeInteger(m.process.node.rawValue)
            b.writeInteger(m.process.incarnation)
            b.writeInteger(m.local)
        }
        for item in items {
            switch item {
            case .queue(let name, let pattern, let members, let counter, let backlog):
                b.writeInteger(UInt8(1))
                string(name)
                string(pattern.name)
                b.writeInteger(UInt32(members.count))
                for m in members { member(m) }
                b.writeInteger(counter)
                b.writeInteger(UInt32(backlog.count))
                for k in backlog { key(k) }
            case .entry(let queue, let e):
                b.writeInteger(UInt8(2))
                string(queue)
                key(e.key)
                if let h = e.holder {
                    b.writeInteger(UInt8(1))
                    member(h)
                } else {
                    b.writeInteger(UInt8(0))
                }
                b.writeInteger(e.assignments)
                let bytes = CheckpointCodec.encode([e.payload])
                b.writeInteger(UInt32(bytes.count))
                b.writeBytes(bytes)
            }
        }
        return Array(b.readableBytesView)
    }

    /// Nil for an empty chunk (the group's first member starts empty).
    public static func decode(_ bytes: [UInt8], topicLimits: TopicLimits) throws -> (cut: ClusterPosition, items: [QueueCheckpointItem])? {
        if bytes.isEmpty { return nil }
        var b = ByteBuffer(bytes: bytes)
        let corrupt = CheckpointCodec.Corrupt()
        guard let m: UInt8 = b.readInteger(), m == marker, let view: UInt64 = b.readInteger(), let n: UInt32 = b.readInteger(),
            n <= UInt32(ClusterPosition.ranksMax)
        else { throw corrupt }
        var delivered: [UInt64] = []
        for _ in 0..<n {
            guard let d: UInt64 = b.readInteger() else { throw corrupt }
            delivered.append(d)
        }
        func string() throws -> String {
            guard let n: UInt16 = b.readInteger(), let s = b.readString(length: Int(n)) else { throw corrupt }
            return s
        }
        func key() throws -> QueueMessageKey {
            // The origin is a rank of a view (below `ranksMax`, like a cut's
            // ranks); an entry's id (`agreedID`) allocates `origin + 1` counts.
            guard let v: UInt64 = b.readInteger(), let o: UInt32 = b.readInteger(), o < UInt32(ClusterPosition.ranksMax),
                let s: UInt64 = b.readInteger()
            else { throw corrupt }
            return QueueMessageKey(view: v, origin: o, seq: s)
        }
        func member() throws -> QueueMember {
            guard let node: UInt64 = b.readInteger(), let inc: UInt64 = b.readInteger(), let local: UInt64 = b.readInteger() else {
                throw corrupt
            }
            return QueueMember(process: ProcessID(node: NodeID(node), incarnation: inc), local: local)
        }
        guard let count: UInt32 = b.readInteger(), Int(count) <= b.readableBytes else { throw corrupt }
        var items: [QueueCheckpointItem] = []
        for _ in 0..<count {
            guard let kind: UInt8 = b.readInteger() else { throw corrupt }
            switch kind {
            case 1:
                let name = try string()
                guard let pattern = try? TopicPattern(try string(), limits: topicLimits) else { throw corrupt }
                guard let mc: UInt32 = b.readInteger(), Int(mc) <= b.readableBytes / 24 else { throw corrupt }
                var members: [QueueMember] = []
                for _ in 0..<mc { members.append(try member()) }
                guard let counter: UInt64 = b.readInteger(), let bc: UInt32 = b.readInteger(), Int(bc) <= b.readableBytes / 20 else {
                    throw corrupt
                }
                var backlog: [QueueMessageKey] = []
                for _ in 0..<bc { backlog.append(try key()) }
                items.append(.queue(name: name, pattern: pattern, members: members, counter: counter, backlog: backlog))
            case 2:
                let queue = try string()
                let k = try key()
                guard let held: UInt8 = b.readInteger() else { throw corrupt }
                let holder = held == 1 ? try member() : nil
                guard let assignments: UInt32 = b.readInteger(), let length: UInt32 = b.readInteger(),
                    let body = b.readBytes(length: Int(length))
                else { throw corrupt }
                guard let message = try CheckpointCodec.decode(body, topicLimits: topicLimits).first else { throw corrupt }
                var copy = message
                copy.id = MessageSource(view: k.view, origin: k.origin, seq: k.seq).agreedID
                items.append(.entry(queue: queue, .init(key: k, payload: copy, holder: holder, assignments: assignments)))
            default:
                throw corrupt
            }
        }
        return (ClusterPosition(view: view, delivered: delivered), items)
    }
}

/// The table at a checkpoint's cut, encoded a chunk at a time.
struct QueueCheckpointReader: CheckpointReader {
    let items: [QueueCheckpointItem]
    let cut: ClusterPosition
    var next = 0

    init(states: [QueueTable<StoredMessage>.QueueState], cut: ClusterPosition) {
        var items: [QueueCheckpointItem] = []
        for s in states {
            items.append(.queue(name: s.name, pattern: s.pattern, members: s.members, counter: s.counter, backlog: s.backlog))
            for e in s.entries { items.append(.entry(queue: s.name, e)) }
        }
        self.items = items
        self.cut = cut
    }

    mutating func nextChunk(bytes: Int) -> (chunk: [UInt8], last: Bool) {
        var end = next
        var size = 0
        while end < items.count && (end == next || size <= bytes) {
            if case .entry(_, let e) = items[end] { size += e.payload.costBytes + 64 } else { size += 256 }
            end += 1
        }
        let chunk = QueueCheckpointCodec.encode(items[next..<end], cut: cut)
        next = end
        return (chunk, next == items.count)
    }
}
