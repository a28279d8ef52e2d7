import PiglixGroups
import PiglixTopics

/// Idempotent publish in the simulator (the `retry` fault; docs/patterns.md,
/// "Idempotent publish"). Each node's application keeps the broker's
/// `IdempotenceTable`, decides every live delivery of an idempotent record
/// in the agreed order, answers retries at entry from it, and carries it to
/// joiners as the checkpoint of the `$piglix.idempotence` group, merged as
/// the broker merges it (Broker+Cluster.swift, `clusterApplyCheckpoint`).
/// Everything random here draws from its own stream, so the other faults of
/// a seed stay where they were.

/// What a node's table remembers of an original: the publish (its unique
/// number) and the message that carried it on this node.
struct SimOriginal: Hashable, Sendable {
    var number: UInt64
    var id: MessageID
}

/// A record as its publisher knows it: retried with the same producer and
/// sequence, the same topic and level.
struct IdempotentRecord: Hashable, Sendable {
    var producer: String
    /// 0 until first sent: the producer numbers records as it sends them.
    var sequence: UInt64
    var topic: Int
    var level: DeliveryLevel
}

struct IdempotenceModel {
    static let producers = ["p1", "p2", "p3"]
    var rng: SimRandom
    /// Publish number → the record it carried.
    var keys: [UInt64: IdempotentRecord] = [:]
    var nextSequence: [String: UInt64] = [:]
    /// Per node, the records it took lately (retried elsewhere when it crashes).
    var recent: [[IdempotentRecord]]
    init(seed: UInt64, nodes: Int) {
        rng = SimRandom(seed: seed ^ 0x6964_656D_706F_7465)
        recent = Array(repeating: [], count: nodes)
    }
}

extension Simulator {
    static let idempotencePattern = try! TopicPattern("$piglix.idempotence")

    var retries: Bool { config.faults.contains(.retry) }

    /// Schedules the first sends of the run's idempotent records and a crash
    /// of the coordinator (with restart) among them.
    mutating func scheduleIdempotentWorkload() {
        guard retries else { return }
        let n = config.nodes
        let end = Int(config.durationTicks)
        for _ in 0..<idem.rng.int(config.idempotentRecords) {
            let record = IdempotentRecord(
                producer: IdempotenceModel.producers[idem.rng.int(0...(IdempotenceModel.producers.count - 1))], sequence: 0,
                topic: idem.rng.int(0...(Self.topics.count - 1)),
                level: [.fifo, .total, .safe][idem.rng.int(0...2)])
            queue.push(UInt64(idem.rng.int(250...end)), .idempotentPublish(node: idem.rng.int(0...(n - 1)), record, attempt: 0))
        }
        let at = UInt64(idem.rng.int(400...(end - 300)))
        queue.push(at, .crashCoordinator(restartAfter: UInt64(idem.rng.int(40...400))))
    }

    /// A client's idempotent publish (or retry) arriving at node `i`.
    mutating func idempotentPublish(_ i: Int, _ given: IdempotentRecord, attempt: Int) {
        var record = given
        if record.sequence == 0 {
            idem.nextSequence[record.producer, default: 0] += 1
            record.sequence = idem.nextSequence[record.producer]!
            for _ in 0..<idem.rng.int(config.retriesPerRecord) {
                queue.push(
                    now + UInt64(idem.rng.int(1...600)), .idempotentPublish(node: idem.rng.int(0...(config.nodes - 1)), record, attempt: 0))
            }
        }
        // 503 (not ready, not in the primary) or no answer: the client
        // tries another node a little later, a few times.
        func elsewhere(_ sim: inout Simulator) {
            guard attempt < 6 else { return }
            sim.queue.push(
                sim.now + UInt64(sim.idem.rng.int(10...120)),
                .idempotentPublish(node: sim.idem.rng.int(0...(sim.config.nodes - 1)), record, attempt: attempt + 1))
        }
        guard nodes[i].status == .up, nodes[i].tableReady else { return elsewhere(&self) }
        // Answered at entry from the table, before the primary check (as
        // the broker's `idempotenceAnswers`).
        let lookup = nodes[i].table.lookup(producer: record.producer, sequence: record.sequence)
        if case .new = lookup, !nodes[i].core.isInPrimary { return elsewhere(&self) }
        nextNumber += 1
        let number = nextNumber
        let me = nodes[i].core.me
        let level: DeliveryLevel = record.level == .fifo ? .total : record.level
        let destination = Destination.topic(Self.topics[record.topic])
        let session = UInt64(idem.rng.int(0...1))
        self.record(.publish(at: now, process: me, session: session, number: number, level: level, destination: destination.description))
        self.record(.idempotent(at: now, process: me, number: number, producer: record.producer, sequence: record.sequence))
        if case .new = lookup {
            idem.keys[number] = record
            idem.recent[i].append(record)
            if idem.recent[i].count > 8 { idem.recent[i].removeFirst() }
            submit(i, number: number, session: session, destination: destination, level: level)
        } else {
            recordAnswer(i, lookup, record: record, number: number, where: "")
        }
    }

    /// Records what a publisher is told instead of a new publish: the
    /// original of a retry, or a 409 past the window.
    mutating func recordAnswer(
        _ i: Int, _ decision: IdempotenceDecision<SimOriginal>, record: IdempotentRecord, number: UInt64, where place: String
    ) {
        let me = nodes[i].core.me
        switch decision {
        case .new: break
        case .duplicate(let first):
            self.record(
                .retryAnswered(
                    at: now, process: me, view: nodes[i].view?.id, producer: record.producer, sequence: record.sequence, number: number,
                    original: first.number))
        case .tooOld(let highest):
            self.record(.fault(at: now, "409\(place) #\(number) \(record.producer)/\(record.sequence) at \(me): highest \(highest)"))
        }
    }

    /// The client of each record node `i` took lately retries it on another
    /// node: its connection broke.
    mutating func retryAfterCrash(_ i: Int) {
        guard retries else { return }
        let records = idem.recent[i]
        idem.recent[i] = []
        for r in records {
            var j = idem.rng.int(0...(config.nodes - 1))
            if j == i { j = (j + 1) % config.nodes }
            queue.push(now + UInt64(idem.rng.int(1...200)), .idempotentPublish(node: j, r, attempt: 0))
        }
    }

    /// True when node `i` (or every node of `sparing`, crashing with it) is
    /// the last of its view and side whose idempotence transfer completed:
    /// the table lives in memory only, so crashing the last holders before
    /// any other member has it would lose it, and the oldest remaining
    /// member would start the group from its own partial table (a stated
    /// limit, docs/patterns.md "Bounds"). The simulator spares them, as it
    /// spares a majority of the newest view (`crashAllowed`).
    /// The same holds for the work queue table (Queues.swift).
    func holdsLastTable(_ i: Int, sparing: [Int] = []) -> Bool {
        // A node paused past the suspicion timeout does not count as another
        // holder, paused or resumed, until it rejoins: the others exclude it
        // and it comes back with an empty table (seed 3046 for the lock
        // table: the two running holders crashed while the third was
        // paused, and tokens started again at 1; seed 301116 for the
        // idempotence table: n2#2 was paused and had resumed, still in the
        // view it was about to leave, when [n3#3, n4#2] crashed together;
        // then n1#2, mid-transfer, started the table with 1 entry and
        // accepted a retry again).
        func last(_ ready: (SimNode) -> Bool) -> Bool {
            guard nodes[i].status != .down, ready(nodes[i]) else { return false }
            let view = nodes[i].view?.id
            return !nodes.indices.contains { j in
                j != i && !sparing.contains(j) && nodes[j].status == .up && !nodes[j].lapsed && ready(nodes[j])
                    && side[j] == side[i] && nodes[j].view?.id == view
            }
        }
        return (retries && last { $0.tableReady }) || (locksOn && last { $0.locks.ready }) || (queuesOn && last { $0.qReady })
    }

    /// A partition that leaves every holder of the idempotence table on a
    /// side that may lose cuts the table off from the side that goes on, as
    /// a crash of its last holders would. The side that goes on is the one
    /// holding a majority of the seats of the newest view (a restarted node
    /// stands in for its seat, so seats are counted by node, not by
    /// incarnation). When one side has that majority and no holder, the
    /// first holder trades sides with its first non-holder (the sides keep
    /// their sizes; no random draw). When neither side has it (an even
    /// split), either may win once crashed seats restart and stand in (seed
    /// 4093: 3 against 3, both holders on one side, their side lost two
    /// seats to crashes, and the other side's flush excluded the last
    /// holder right after the heal): with two holders or more, one of them
    /// trades sides so each side keeps one (`holdsLastTable` spares the last
    /// of each side); with one, a non-holder of the other side moves to its
    /// side, which then holds the majority.
    func spareTableHolders(_ s: inout [Int]) {
        // Queue holders first, then lock holders, then idempotence holders:
        // a node holds the queue and lock tables only after the idempotence
        // table (their groups wait for that one), so a holder of either on
        // the side that goes on holds that one too. A node placed for one
        // table is not moved away for the next.
        var placed: Set<Int> = []
        if queuesOn { spareHolders(&s, nodes.indices.filter { nodes[$0].status != .down && nodes[$0].qReady }, placed: &placed) }
        if locksOn { spareHolders(&s, nodes.indices.filter { nodes[$0].status != .down && nodes[$0].locks.ready }, placed: &placed) }
        if retries { spareHolders(&s, nodes.indices.filter { nodes[$0].status != .down && nodes[$0].tableReady }, placed: &placed) }
    }

    func spareHolders(_ s: inout [Int], _ holders: [Int], placed: inout Set<Int>) {
        guard !holders.isEmpty else { return }
        var newest: ClusterView?
        for node in nodes where node.status != .down {
            if let v = node.view, newest == nil || v.id > newest!.id { newest = v }
        }
        let seats = Set(newest?.members.map(\.node) ?? [])
        let isSeat = { (j: Int) in seats.contains(NodeID(UInt64(j + 1))) }
        // A holder outside the newest view rejoins as a new incarnation,
        // which drops its table: it holds nothing for the side that goes on
        // (seed 1001839: n6#2, cut off and about to rejoin, counted as the
        // holder on the majority side while the only member holding the
        // table, n1#1, was left on the minority side).
        let holders = holders.filter { newest?.contains(nodes[$0].core.me) ?? true }
        guard !holders.isEmpty else { return }
        let ones = s.indices.filter { s[$0] == 1 && isSeat($0) }.count
        let zeros = s.indices.filter { s[$0] == 0 && isSeat($0) }.count
        let big: Int? = 2 * ones > seats.count ? 1 : 2 * zeros > seats.count ? 0 : nil
        if let big {
            guard !holders.contains(where: { s[$0] == big }) else { return }
            // Prefer a seat, so the holder's new side keeps its majority.
            guard
                let j = s.indices.first(where: { s[$0] == big && isSeat($0) && !placed.contains($0) })
                    ?? s.indices.first(where: { s[$0] == big && !placed.contains($0) })
            else { return }
            s.swapAt(holders[0], j)
            placed.insert(holders[0])
            return
        }
        let side = s[holders[0]]
        guard !holders.contains(where: { s[$0] != side }) else { return }
        if holders.count > 1 {
            guard
                let j = s.indices.first(where: { s[$0] != side && isSeat($0) && !placed.contains($0) })
                    ?? s.indices.first(where: { s[$0] != side && !placed.contains($0) })
            else { return }
            s.swapAt(holders[1], j)
            placed.formUnion([holders[0], holders[1]])
        } else if let j = s.indices.first(where: { s[$0] != side && isSeat($0) && !placed.contains($0) }) {
            s[j] = side
            placed.formUnion([holders[0], j])
        }
    }

    /// The node coordinating the newest installed view, if any.
    var coordinatorNode: Int? {
        var newest: ClusterView?
        for node in nodes where node.status == .up {
            if let v = node.view, newest == nil || v.id > newest!.id { newest = v }
        }
        guard let c = newest?.id.coordinator else { return nil }
        return nodes.firstIndex { $0.core.me == c && $0.status != .down }
    }

    /// The application's decision on a delivery: true to hand it to the
    /// local groups. Ordinary records are always delivered.
    mutating func decideIdempotent(_ i: Int, _ d: Delivery, number n: UInt64) -> Bool {
        guard let record = idem.keys[n] else { return true }
        let original = SimOriginal(number: n, id: d.message.id)
        if d.afterCheckpoint {
            // Admitted when it passed live: delivered only if it is the
            // original, whether or not the window has moved past it since
            // (seed 153179: p3/11 was admitted live after p3/3 and before
            // p3/3's release, and the window of 8 withheld the original).
            return nodes[i].table.remembered(producer: record.producer, sequence: record.sequence)?.id == d.message.id
        }
        let decision = nodes[i].table.admit(producer: record.producer, sequence: record.sequence, original: original)
        guard nodes[i].tableReady else {
            // A partial table decides nothing: the admission is kept only
            // for the merge with the checkpoint, and no local group is
            // active yet (`prerequisiteGroup`), so nothing is handed on.
            precondition(d.groups.isEmpty, "\(nodes[i].core.me) delivers to \(d.groups) before its idempotence table is complete")
            return false
        }
        let me = nodes[i].core.me
        if d.message.publish.origin == me { nodes[i].idempotentAcks[n] = decision }
        if case .new = decision {
            self.record(.accepted(at: now, process: me, view: nodes[i].view?.id, producer: record.producer, sequence: record.sequence, number: n, id: d.message.id))
            return true
        }
        return false
    }

    /// The answer to the publisher of an acked idempotent record: what its
    /// delivery decided.
    mutating func idempotentAcked(_ i: Int, number n: UInt64) {
        guard let record = idem.keys[n], let decision = nodes[i].idempotentAcks.removeValue(forKey: n) else { return }
        recordAnswer(i, decision, record: record, number: n, where: " at delivery")
    }

    /// The last chunk of an idempotence checkpoint was applied: the
    /// provider's table at the cut, then this node's own admissions after it.
    mutating func applyIdempotenceCheckpoint(_ i: Int, state: [UInt8], cut: StreamPosition?) {
        let snapshot = Self.decodeTable(state)
        nodes[i].table.merge(snapshot) { original in
            guard let cut else { return true }
            return !cut.covers(original.id)
        }
        nodes[i].tableReady = true
        self.record(.fault(at: now, "idempotence table at \(nodes[i].core.me): \(nodes[i].table.entryCount) entries"))
    }

    /// The table's window contents, for the final agreement check.
    func tableContents(_ i: Int) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for p in nodes[i].table.snapshot() {
            for e in p.entries { out["\(p.producer)/\(e.sequence)"] = e.original.number }
        }
        return out
    }

    // MARK: Checkpoint encoding (little-endian words)

    static func encodeTable(_ snapshot: [IdempotenceTable<SimOriginal>.ProducerState]) -> [UInt8] {
        var words: [UInt64] = [UInt64(snapshot.count)]
        for p in snapshot {
            words.append(UInt64(IdempotenceModel.producers.firstIndex(of: p.producer)!))
            words.append(p.highest)
            words.append(UInt64(p.entries.count))
            for e in p.entries {
                let id = e.original.id
                words += [
                    e.sequence, e.original.number, id.view.epoch, id.view.coordinator.node.rawValue, id.view.coordinator.incarnation,
                    UInt64(id.origin), id.seq,
                ]
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(words.count * 8)
        for w in words { for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(b)))) } }
        return out
    }

    static func decodeTable(_ bytes: [UInt8]) -> [IdempotenceTable<SimOriginal>.ProducerState] {
        var words: [UInt64] = []
        var k = 0
        while k + 8 <= bytes.count {
            words.append(number(Array(bytes[k..<(k + 8)])))
            k += 8
        }
        var at = 0
        func next() -> UInt64 {
            defer { at += 1 }
            return words[at]
        }
        guard !words.isEmpty else { return [] }
        var out: [IdempotenceTable<SimOriginal>.ProducerState] = []
        for _ in 0..<next() {
            let producer = IdempotenceModel.producers[Int(next())]
            let highest = next()
            var entries: [(sequence: UInt64, original: SimOriginal)] = []
            for _ in 0..<next() {
                let sequence = next()
                let n = next()
                let view = ViewID(epoch: next(), coordinator: ProcessID(node: NodeID(next()), incarnation: next()))
                let id = MessageID(view: view, origin: UInt32(next()), seq: next())
                entries.append((sequence, SimOriginal(number: n, id: id)))
            }
            out.append(.init(producer: producer, highest: highest, entries: entries))
        }
        return out
    }
}
