import PiglixGroups
import PiglixTopics

/// Work queues in the simulator (the `queue` fault; docs/patterns.md, "Work
/// queues"). Each node's application keeps the broker's `QueueTable` and
/// feeds it, in its delivery order, the join, leave and ack records
/// (`total` to the group `$piglix.queues`), the live `total`/`safe`
/// deliveries of every topic and the cluster views it installs (as the
/// broker's `clusterDeliver` and `clusterViewInstalled`); the table is the
/// group's checkpoint, and a joiner replays what it delivered past the cut
/// (as `applyQueueCheckpoint`). Members join and leave on random nodes; a
/// member acks most of what it gets after a while and forgets the rest
/// (redelivered when it leaves or its node fails); after the faults stop,
/// every live node drains the queues (a member each, every assignment acked).
/// The checker adds Q1–Q3. Its randomness has its own stream.

/// A queue control record, by its publish number.
enum SimQueueControl: Hashable, Sendable {
    case join(queue: Int, local: UInt64)
    case leave(queue: Int, local: UInt64)
    case ack(queue: Int, keys: [QueueMessageKey])
}

/// A queue event delivered while the node's queue transfer runs.
enum SimQueueEvent {
    case control(SimQueueControl, origin: ProcessID, id: MessageID, publish: PublishID)
    /// `decided`: the idempotence table's verdict at the live delivery.
    case work(MessageID, Topic, number: UInt64, publish: PublishID, decided: Bool)
    case view(ClusterView)
}

struct QueueModel {
    static let queues: [(name: String, pattern: TopicPattern)] = [("w", try! TopicPattern("s.>")), ("v", try! TopicPattern("s.b.*"))]
    static let pattern = try! TopicPattern("$piglix.queues")
    /// Small, so the backlog and the in-flight bound are exercised.
    static let limits = QueueLimits(queuesMax: 4, membersPerQueueMax: 6, unackedPerQueueMax: 48, inFlightPerMemberMax: 3)
    var rng: SimRandom
    var controls: [UInt64: SimQueueControl] = [:]
    var draining = false
    init(seed: UInt64) { rng = SimRandom(seed: seed ^ 0x7175_6575_6573_0001) }
}

extension Simulator {
    var queuesOn: Bool { config.faults.contains(.queue) }

    func queueName(_ q: Int) -> String { QueueModel.queues[q].name }

    /// Members joining and leaving at random times.
    mutating func scheduleQueueWorkload() {
        guard queuesOn else { return }
        let end = Int(config.durationTicks)
        for _ in 0..<qmodel.rng.int(4...10) {
            let i = qmodel.rng.int(0...(config.nodes - 1))
            let at = UInt64(qmodel.rng.int(150...end))
            queue.push(at, .queueJoin(node: i, queue: qmodel.rng.int(0...(QueueModel.queues.count - 1))))
            if qmodel.rng.chance(0.5) { queue.push(at + UInt64(qmodel.rng.int(50...900)), .queueLeave(node: i)) }
        }
    }

    mutating func sendQueueControl(_ i: Int, _ control: SimQueueControl) {
        nextNumber += 1
        let number = nextNumber
        qmodel.controls[number] = control
        record(.publish(at: now, process: nodes[i].core.me, session: 0, number: number, level: .total, destination: Destination.group(QueueModel.pattern).description))
        submit(i, number: number, session: 0, destination: .group(QueueModel.pattern), level: .total)
    }

    mutating func queueJoin(_ i: Int, queue q: Int) {
        guard queuesOn, nodes[i].status == .up, nodes[i].qReady, nodes[i].core.isInPrimary else { return }
        nodes[i].qNextLocal += 1
        let local = nodes[i].qNextLocal
        nodes[i].qMembers[local] = q
        sendQueueControl(i, .join(queue: q, local: local))
    }

    mutating func queueLeave(_ i: Int) {
        guard queuesOn, nodes[i].status == .up, nodes[i].core.isInPrimary, let (local, q) = nodes[i].qMembers.min(by: { $0.key < $1.key })
        else { return }
        nodes[i].qMembers[local] = nil
        sendQueueControl(i, .leave(queue: q, local: local))
    }

    mutating func queueAck(_ i: Int, generation: UInt64, queue q: Int, local: UInt64, key: QueueMessageKey) {
        guard nodes[i].generation == generation, nodes[i].status == .up, nodes[i].qMembers[local] == q, nodes[i].qReady,
            nodes[i].core.isInPrimary
        else { return }
        sendQueueControl(i, .ack(queue: q, keys: [key]))
    }

    // MARK: The application, in delivery order

    /// A delivery reaches the queue table (or the transfer buffer).
    /// `decided`: the idempotence table's verdict.
    mutating func queueDelivery(_ i: Int, _ d: Delivery, number n: UInt64, decided: Bool) {
        guard queuesOn, !d.afterCheckpoint, d.message.level != .fifo, case .publish(let destination) = d.message.kind else { return }
        // A message the table's checkpoint already held: its cut covers it
        // (seed 403651), or it is the re-send of one the checkpoint held.
        if d.skippedGroups.contains(QueueModel.pattern) {
            record(.fault(at: now, "queue table at \(nodes[i].core.me) skips \(d.message.publish), its checkpoint holds it"))
            return
        }
        switch destination {
        case .group(let g):
            guard g == QueueModel.pattern, let control = qmodel.controls[n] else { return }
            if !nodes[i].qReady {
                nodes[i].qBuffer.append(.control(control, origin: d.message.publish.origin, id: d.message.id, publish: d.message.publish))
                return
            }
            applyQueueControl(i, control, origin: d.message.publish.origin)
        case .topic(let topic):
            if !nodes[i].qReady {
                nodes[i].qBuffer.append(.work(d.message.id, topic, number: n, publish: d.message.publish, decided: decided))
                return
            }
            guard decided else { return }
            queueWork(i, d.message.id, topic, number: n)
        }
    }

    mutating func queueWork(_ i: Int, _ id: MessageID, _ topic: Topic, number n: UInt64) {
        let key = QueueMessageKey(view: id.view.epoch, origin: id.origin, seq: id.seq)
        handleQueueEffects(i, nodes[i].qtable.deliver(key: key, topic: topic, payload: n))
    }

    mutating func applyQueueControl(_ i: Int, _ control: SimQueueControl, origin: ProcessID) {
        switch control {
        case .join(let q, let local):
            let member = QueueMember(process: origin, local: local)
            handleQueueEffects(i, nodes[i].qtable.join(queue: queueName(q), pattern: QueueModel.queues[q].pattern, member: member))
        case .leave(let q, let local):
            handleQueueEffects(i, nodes[i].qtable.leave(queue: queueName(q), member: QueueMember(process: origin, local: local)))
        case .ack(let q, let keys):
            let (results, effects) = nodes[i].qtable.ack(queue: queueName(q), keys: keys)
            for (key, result) in zip(keys, results) where result == .acked {
                record(.queueAcked(at: now, process: nodes[i].core.me, queue: queueName(q), key: key))
            }
            handleQueueEffects(i, effects)
        }
    }

    mutating func queueViewInstalled(_ i: Int, _ v: ClusterView) {
        guard queuesOn else { return }
        if !nodes[i].qReady {
            nodes[i].qBuffer.append(.view(v))
            return
        }
        handleQueueEffects(i, nodes[i].qtable.viewInstalled(Set(v.members)))
    }

    mutating func handleQueueEffects(_ i: Int, _ effects: [QueueEffect<UInt64>]) {
        let me = nodes[i].core.me
        for effect in effects {
            switch effect {
            case .assign(let q, let member, let key, let n, let redelivered):
                let index = nodes[i].qtable.entry(key, in: q)?.assignments ?? 0
                record(
                    .queueAssign(
                        at: now, process: me, view: nodes[i].qReplayView ?? nodes[i].view?.id, queue: q, key: key, index: index, member: member, number: n,
                        redelivered: redelivered))
                guard member.process == me, let memberQueue = nodes[i].qMembers[member.local] else { continue }
                // The member gets it: it acks most after a while, all while draining.
                if qmodel.draining || qmodel.rng.chance(0.75) {
                    let delay = qmodel.draining ? qmodel.rng.int(1...20) : qmodel.rng.int(5...300)
                    queue.push(
                        now + UInt64(delay), .queueAck(node: i, generation: nodes[i].generation, queue: memberQueue, local: member.local, key: key))
                }
            case .refuseJoin(_, let member, let reason):
                record(.fault(at: now, "queue join of \(member) refused at \(me): \(reason)"))
                if member.process == me { nodes[i].qMembers[member.local] = nil }
            case .overflow(let q, let key):
                record(.fault(at: now, "queue \(q) full at \(me): \(key) not queued"))
            }
        }
    }

    /// Rejoining or restarting: the cluster removes the old incarnation's
    /// members; the table comes again by state transfer.
    mutating func resetQueues(_ i: Int) {
        nodes[i].qtable = QueueTable(limits: QueueModel.limits)
        nodes[i].qReady = false
        nodes[i].qBuffer = []
        nodes[i].qSkip = []
        nodes[i].qMembers = [:]
    }

    /// The queue table's checkpoint held a message a flush cut: the next
    /// checkpoint replaces it, and the deliveries from here are replayed on
    /// it (as at a join). The node's members stay.
    mutating func restartQueueTransfer(_ i: Int) {
        nodes[i].qReady = false
        nodes[i].qBuffer = []
        nodes[i].qSkip = []
    }

    /// After the faults stopped: each live node in the primary gets a member
    /// of each queue and acks everything its members hold and will get.
    mutating func drainQueues() {
        guard queuesOn else { return }
        qmodel.draining = true
        for i in nodes.indices where nodes[i].status == .up && nodes[i].qReady && nodes[i].core.isInPrimary {
            for q in QueueModel.queues.indices { queueJoin(i, queue: q) }
            for (local, q) in nodes[i].qMembers.sorted(by: { $0.key < $1.key }) {
                let member = QueueMember(process: nodes[i].core.me, local: local)
                for key in nodes[i].qtable.held(by: member, in: queueName(q)) {
                    queue.push(now + UInt64(qmodel.rng.int(1...20)), .queueAck(node: i, generation: nodes[i].generation, queue: q, local: local, key: key))
                }
            }
        }
    }

    /// The unacked keys of a node's table, for Q2.
    func queueLeftovers(_ i: Int) -> [String] {
        nodes[i].qtable.snapshot().flatMap { s in s.entries.map { "\(s.name):\($0.key)" } }
    }

    // MARK: Checkpoint

    /// The last chunk of a queue checkpoint was applied: the provider's
    /// table at the cut, then this node's deliveries past it, in order.
    mutating func applyQueueCheckpoint(_ i: Int, state: [UInt8], cut: StreamPosition?) {
        nodes[i].qtable = QueueTable(limits: QueueModel.limits, restoring: Self.decodeQueues(state))
        nodes[i].qReady = true
        let events = nodes[i].qBuffer
        nodes[i].qBuffer = []
        var skip = nodes[i].qSkip
        nodes[i].qSkip = []
        // Assignments made in the replay belong to the view of the event
        // replayed (Q1 checks the member against it).
        defer { nodes[i].qReplayView = nil }
        for event in events {
            switch event {
            case .control(let control, let origin, let id, let publish):
                if let cut, cut.covers(id) { continue }
                if skip.remove(publish) != nil { continue }
                nodes[i].qReplayView = id.view
                applyQueueControl(i, control, origin: origin)
            case .work(let id, let topic, let n, let publish, let decided):
                if let cut, cut.covers(id) { continue }
                if skip.remove(publish) != nil { continue }
                nodes[i].qReplayView = id.view
                // An idempotent record: the original, as its live delivery
                // decided, or as the table remembers it. Not `lookup`: the
                // producer's window may have moved past it since (seed
                // 2034381: p2/7 was admitted at 1975, p2/15 at 1990, and
                // the replay at 2001 left p2/7 out of this node's table).
                if retries, !decided, let record = idem.keys[n] {
                    guard nodes[i].table.remembered(producer: record.producer, sequence: record.sequence)?.id == id else { continue }
                }
                queueWork(i, id, topic, number: n)
            case .view(let v):
                if let cut, v.id <= cut.view { continue }
                nodes[i].qReplayView = v.id
                handleQueueEffects(i, nodes[i].qtable.viewInstalled(Set(v.members)))
            }
        }
        record(.fault(at: now, "queue table at \(nodes[i].core.me): \(queueLeftovers(i).count) unacked"))
    }

    static func encodeQueues(_ states: [QueueTable<UInt64>.QueueState]) -> [UInt8] {
        var words: [UInt64] = [UInt64(states.count)]
        func member(_ m: QueueMember) { words += [m.process.node.rawValue, m.process.incarnation, m.local] }
        func key(_ k: QueueMessageKey) { words += [k.view, UInt64(k.origin), k.seq] }
        for s in states {
            words.append(UInt64(QueueModel.queues.firstIndex { $0.name == s.name }!))
            words.append(UInt64(s.members.count))
            for m in s.members { member(m) }
            words.append(s.counter)
            words.append(UInt64(s.entries.count))
            for e in s.entries {
                key(e.key)
                words += [e.payload, UInt64(e.assignments), e.holder == nil ? 0 : 1]
                if let h = e.holder { member(h) }
            }
            words.append(UInt64(s.backlog.count))
            for k in s.backlog { key(k) }
        }
        var out: [UInt8] = []
        out.reserveCapacity(words.count * 8)
        for w in words { for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(b)))) } }
        return out
    }

    static func decodeQueues(_ bytes: [UInt8]) -> [QueueTable<UInt64>.QueueState] {
        var words: [UInt64] = []
        var k = 0
        while k + 8 <= bytes.count {
            words.append(number(Array(bytes[k..<(k + 8)])))
            k += 8
        }
        guard !words.isEmpty else { return [] }
        var at = 0
        func next() -> UInt64 {
            defer { at += 1 }
            return words[at]
        }
        func member() -> QueueMember { QueueMember(process: ProcessID(node: NodeID(next()), incarnation: next()), local: next()) }
        func key() -> QueueMessageKey { QueueMessageKey(view: next(), origin: UInt32(next()), seq: next()) }
        var out: [QueueTable<UInt64>.QueueState] = []
        for _ in 0..<next() {
            let q = QueueModel.queues[Int(next())]
            var members: [QueueMember] = []
            for _ in 0..<next() { members.append(member()) }
            let counter = next()
            var entries: [QueueTable<UInt64>.Entry] = []
            for _ in 0..<next() {
                let k = key()
                let payload = next()
                let assignments = UInt32(next())
                let holder = next() == 1 ? member() : nil
                entries.append(.init(key: k, payload: payload, holder: holder, assignments: assignments))
            }
            var backlog: [QueueMessageKey] = []
            for _ in 0..<next() { backlog.append(key()) }
            out.append(.init(name: q.name, pattern: q.pattern, members: members, counter: counter, entries: entries, backlog: backlog))
        }
        return out
    }
}
