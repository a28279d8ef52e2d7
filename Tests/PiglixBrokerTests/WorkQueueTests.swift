import NIOCore
import PiglixTopics
import PiglixWire
import XCTest

@testable import PiglixBroker
@testable import PiglixCluster
@testable import PiglixGroups

/// Work queues in the broker (docs/patterns.md, "Work queues"): one node,
/// and cluster mode over the fake group layer.
final class WorkQueueTests: XCTestCase {
    private func record(_ topic: String, _ text: String, _ delivery: DeliveryLevel = .fifo) -> PublishRecord {
        PublishRecord(topic: topic, payload: ByteBuffer(string: text), delivery: delivery)
    }

    private func take(_ s: Subscription) async -> [StoredMessage] {
        await s.next(maxBytes: 1 << 20).messages
    }

    func testSingleNode_membersGetDisjointSharesAndAClosedStreamsMessagesAreRedelivered_Q1_Q2() async throws {
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE)
        let pattern = try TopicPattern("jobs.>")
        let a = try await broker.openQueue(name: "w", pattern: pattern, overflow: .disconnect)
        let b = try await broker.openQueue(name: "w", pattern: pattern, overflow: .disconnect)
        let plain = try broker.subscribe(patterns: [pattern], options: .init(overflow: .dropOldest))
        for i in 1...6 { _ = try broker.publish(record("jobs.x", "m\(i)")) }
        let gotA = await take(a)
        let gotB = await take(b)
        XCTAssertEqual(gotA.map { String(buffer: $0.payload) }, ["m1", "m3", "m5"])
        XCTAssertEqual(gotB.map { String(buffer: $0.payload) }, ["m2", "m4", "m6"])
        XCTAssertTrue(gotA.allSatisfy { $0.queue == "w" && !$0.redelivered })
        let all = await take(plain)
        XCTAssertEqual(all.count, 6, "an ordinary subscriber still gets every message")
        // a acks m1; its stream closes: m3 and m5 go to b, redelivered.
        let results = try await broker.ack(queue: "w", ids: [gotA[0].id.description, "00000000-1"])
        XCTAssertEqual(results, [.acked, .unknown])
        a.cancel()
        let again = await take(b)
        XCTAssertEqual(again.map { String(buffer: $0.payload) }, ["m3", "m5"])
        XCTAssertTrue(again.allSatisfy(\.redelivered))
        XCTAssertEqual(again.map(\.id), [gotA[1].id, gotA[2].id], "the same id as the first delivery")
        let second = try await broker.ack(queue: "w", ids: again.map(\.id.description))
        XCTAssertEqual(second, [.acked, .acked])
        let third = try await broker.ack(queue: "w", ids: [gotA[1].id.description])
        XCTAssertEqual(third, [.unknown], "already acked")
        XCTAssertEqual(broker.queueStats.unacked, 3, "b's own m2, m4, m6")
    }

    func testSingleNode_queueNameAndPatternAreChecked() async throws {
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE)
        do {
            _ = try await broker.openQueue(name: "bad name", pattern: try TopicPattern("a"), overflow: .disconnect)
            XCTFail("accepted")
        } catch let error as SubscribeError { XCTAssertEqual(error.status, 400) }
        let s = try await broker.openQueue(name: "w", pattern: try TopicPattern("a"), overflow: .disconnect)
        do {
            _ = try await broker.openQueue(name: "w", pattern: try TopicPattern("b"), overflow: .disconnect)
            XCTFail("accepted")
        } catch let error as SubscribeError { XCTAssertEqual(error.status, 409) }
        _ = s
    }

    func testCluster_recordsAQueueTakesGoTotalAndCarryTheAgreedId() async throws {
        let layer = FakeGroupLayer()
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        let q = try await broker.openQueue(name: "w", pattern: try TopicPattern("jobs.>"), overflow: .disconnect)
        let receipts = await broker.publish([record("jobs.a", "one"), record("other", "two")], session: 1)
        XCTAssertEqual(try receipts[0].get().delivery, .total, "fifo is sent total when a queue takes it")
        XCTAssertEqual(try receipts[1].get().delivery, .fifo)
        let got = await take(q)
        XCTAssertEqual(got.map { String(buffer: $0.payload) }, ["one"])
        let id = got[0].id.description
        XCTAssertTrue(id.hasPrefix("v1."), id)
        let results = try await broker.ack(queue: "w", ids: [id, id])
        XCTAssertEqual(results, [.acked, .unknown])
        XCTAssertEqual(broker.queueStats.unacked, 0)
    }

    func testCluster_aNodeFailureHandsItsMembersMessagesToTheNextCohort_Q2() async throws {
        let layer = FakeGroupLayer()
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        let q = try await broker.openQueue(name: "w", pattern: try TopicPattern("jobs.>"), overflow: .disconnect)
        // A member on another process joins (a record from n2).
        let n2 = ProcessID(node: NodeID(2), incarnation: 1)
        let view = ViewID(epoch: 1, coordinator: layer.me)
        let join = DataMessage(
            id: PiglixGroups.MessageID(view: view, origin: 1, seq: 1), publish: PublishID(origin: n2, seq: 1), session: 0, level: .total,
            kind: .publish(.group(Broker.queuesPattern)), payload: QueueControl.join(queue: "w", pattern: "jobs.>", local: 9).encode())
        broker.clusterDeliver([
            ClusterDelivery(delivery: Delivery(message: join, view: view, groups: [], afterCheckpoint: false), viewEpoch: 1, delivered: [0, 1])
        ])
        for i in 1...4 { _ = await broker.publish([record("jobs.a", "m\(i)")], session: 1) }
        let mine = await take(q)
        XCTAssertEqual(mine.map { String(buffer: $0.payload) }, ["m1", "m3"])
        broker.clusterViewInstalled(epoch: 2, members: [layer.me], me: layer.me)
        let taken = await take(q)
        XCTAssertEqual(taken.map { String(buffer: $0.payload) }, ["m2", "m4"])
        XCTAssertTrue(taken.allSatisfy(\.redelivered))
    }

    /// Seed 2146: a joiner's queue table came from a member that then was
    /// excluded, holding a message the flush cut. The core restarts the
    /// transfer (`clusterTransferRestarted`): queue events are kept from
    /// there, the survivor's checkpoint replaces the table, this node's
    /// members get what the new table gives them and the old did not, and
    /// the kept events past the new cut are replayed on it (Q1, Q2).
    func testCluster_aRestartedTransferReplacesTheTableAndSendsNewHoldings_Q1_Q2() async throws {
        let layer = FakeGroupLayer()
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        let pattern = try TopicPattern("jobs.>")
        let q = try await broker.openQueue(name: "w", pattern: pattern, overflow: .disconnect)
        for i in 1...2 { _ = await broker.publish([record("jobs.a", "m\(i)")], session: 1) }
        let first = await take(q)
        XCTAssertEqual(first.map { String(buffer: $0.payload) }, ["m1", "m2"])
        let member = try XCTUnwrap(broker.state.withLock { $0.queueTable.members(of: "w") }.first)

        broker.clusterTransferRestarted(pattern: Broker.queuesPattern)
        _ = await broker.publish([record("jobs.a", "m3")], session: 1)
        XCTAssertEqual(broker.state.withLock { $0.queueBuffer.count }, 1, "kept for after the new checkpoint")

        // The survivor's table at its cut (seq 3: the join, m1, m2): m1 is
        // this member's as before, m2 was acked, m9 is this member's there
        // and never was here.
        var table = QueueTable<StoredMessage>()
        _ = table.join(queue: "w", pattern: pattern, member: member)
        for (seq, text) in [(UInt64(2), "m1"), (9, "m9")] {
            let source = MessageSource(view: 1, origin: 0, seq: seq)
            let message = StoredMessage(
                id: source.agreedID, topic: "jobs.a", payload: ByteBuffer(string: text), delivery: .total, headers: [], payloadIsText: true,
                source: source)
            _ = table.deliver(key: source.queueKey, topic: try Topic("jobs.a"), payload: message)
        }
        var reader = QueueCheckpointReader(states: table.snapshot(), cut: ClusterPosition(view: 1, delivered: [3]))
        let (chunk, last) = reader.nextChunk(bytes: 1 << 20)
        XCTAssertTrue(last)
        XCTAssertTrue(broker.clusterApplyCheckpoint(pattern: Broker.queuesPattern, chunk: chunk, first: true, last: true))
        let after = await take(q)
        XCTAssertEqual(after.map { String(buffer: $0.payload) }, ["m9", "m3"], "the new holding, then the replayed delivery past the cut")
        XCTAssertEqual(
            Set(broker.state.withLock { $0.queueTable.held(by: member, in: "w") }.map(\.seq)), [2, 4, 9], "m2 is gone with the old table")
    }

    /// Seed 2034381: an idempotent record admitted live while the queue
    /// transfer ran was left out of the replay, because the producer's
    /// window had moved past it by the checkpoint (Q1, Q2). The replay
    /// takes the live delivery's verdict.
    func testCluster_anIdempotentRecordKeptDuringATransferIsReplayedAfterItsWindowMoved_Q2() async throws {
        let layer = FakeGroupLayer()
        var settings = BrokerSettings()
        settings.idempotence.windowSequences = 2
        let broker = try Broker(settings: settings, epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        let pattern = try TopicPattern("jobs.>")
        let q = try await broker.openQueue(name: "w", pattern: pattern, overflow: .disconnect)
        let member = try XCTUnwrap(broker.state.withLock { $0.queueTable.members(of: "w") }.first)

        broker.clusterTransferRestarted(pattern: Broker.queuesPattern)
        func idempotent(_ text: String, _ sequence: UInt64) -> PublishRecord {
            PublishRecord(topic: "jobs.a", payload: ByteBuffer(string: text), delivery: .total, producer: "p", sequence: sequence)
        }
        // Admitted live, kept for after the checkpoint; then the window (2)
        // moves past sequence 1.
        for (text, sequence) in [("s1", UInt64(1)), ("s5", 5)] { _ = try await broker.publish([idempotent(text, sequence)], session: 1)[0].get() }
        XCTAssertEqual(broker.state.withLock { $0.queueBuffer.count }, 2)
        if case .tooOld = broker.state.withLock({ $0.idempotence.lookup(producer: "p", sequence: 1) }) {} else {
            XCTFail("the window has moved past sequence 1")
        }

        // The survivor's table at a cut before both (seq 1: the join).
        var table = QueueTable<StoredMessage>()
        _ = table.join(queue: "w", pattern: pattern, member: member)
        var reader = QueueCheckpointReader(states: table.snapshot(), cut: ClusterPosition(view: 1, delivered: [1]))
        let (chunk, _) = reader.nextChunk(bytes: 1 << 20)
        XCTAssertTrue(broker.clusterApplyCheckpoint(pattern: Broker.queuesPattern, chunk: chunk, first: true, last: true))
        let after = await take(q)
        XCTAssertEqual(after.map { String(buffer: $0.payload) }, ["s1", "s5"], "both originals replayed, in order")
        XCTAssertEqual(broker.state.withLock { $0.queueTable.held(by: member, in: "w") }.count, 2)
    }

    func testCheckpointRoundTripCarriesTheTableWithPayloads() throws {
        var table = QueueTable<StoredMessage>()
        let member = QueueMember(process: ProcessID(node: NodeID(3), incarnation: 2), local: 5)
        _ = table.join(queue: "w", pattern: try TopicPattern("a.*"), member: member)
        let source = MessageSource(view: 4, origin: 1, seq: 9)
        let message = StoredMessage(
            id: source.agreedID, topic: "a.b", payload: ByteBuffer(string: "payload"), delivery: .total, headers: [], payloadIsText: true,
            source: source)
        _ = table.deliver(key: source.queueKey, topic: try Topic("a.b"), payload: message)
        var reader = QueueCheckpointReader(states: table.snapshot(), cut: ClusterPosition(view: 4, delivered: [3, 9]))
        var assembly = QueueCheckpointAssembly()
        var last = false
        while !last {
            let (chunk, l) = reader.nextChunk(bytes: 1)
            last = l
            let decoded = try XCTUnwrap(try QueueCheckpointCodec.decode(chunk, topicLimits: .default))
            assembly.cut = decoded.cut
            assembly.add(decoded.items)
        }
        let copy = QueueTable<StoredMessage>(limits: .default, restoring: assembly.states)
        XCTAssertEqual(copy.members(of: "w"), [member])
        let entry = try XCTUnwrap(copy.entry(source.queueKey, in: "w"))
        XCTAssertEqual(entry.holder, member)
        XCTAssertEqual(String(buffer: entry.payload.payload), "payload")
        XCTAssertEqual(entry.payload.id, source.agreedID)
        XCTAssertEqual(assembly.cut, ClusterPosition(view: 4, delivered: [3, 9]))
        XCTAssertEqual(QueueControl.decode(QueueControl.ack(queue: "w", keys: [source.queueKey]).encode()), .ack(queue: "w", keys: [source.queueKey]))
    }

    /// Found by FuzzTables (`Fuzz/crashes/FuzzTables/queue-checkpoint-origin-oom`):
    /// a checkpoint entry's key names an origin rank of up to 2^32 - 1, and
    /// the entry's id (`MessageSource.agreedID`) allocated `origin + 1`
    /// counts, 32 GiB from 4 bytes of a peer. An origin past the ranks a
    /// position may hold (`ClusterPosition.ranksMax`) is now refused.
    func testCheckpointEntryWithAnOriginPastTheRanksIsRefused() throws {
        func chunk(origin: UInt32) -> [UInt8] {
            let source = MessageSource(view: 4, origin: origin, seq: 9)
            let message = StoredMessage(
                id: PiglixWire.MessageID(sequence: 0, position: ClusterPosition(view: 4, delivered: [])), topic: "a.b",
                payload: ByteBuffer(string: "p"), delivery: .total, headers: [], payloadIsText: true, source: source)
            let key = QueueMessageKey(view: 4, origin: origin, seq: 9)
            let items: [QueueCheckpointItem] = [.entry(queue: "w", .init(key: key, payload: message, holder: nil, assignments: 1))]
            return QueueCheckpointCodec.encode(items[...], cut: ClusterPosition(view: 4, delivered: [9]))
        }
        let last = UInt32(ClusterPosition.ranksMax - 1)
        let decoded = try XCTUnwrap(try QueueCheckpointCodec.decode(chunk(origin: last), topicLimits: .default))
        guard case .entry(_, let entry) = decoded.items.first else { return XCTFail("no entry") }
        XCTAssertEqual(entry.payload.id.position?.delivered.count, ClusterPosition.ranksMax)
        for origin in [UInt32(ClusterPosition.ranksMax), .max] {
            XCTAssertThrowsError(try QueueCheckpointCodec.decode(chunk(origin: origin), topicLimits: .default), "origin \(origin)")
        }
        // The same bound in the idempotence table's checkpoint, whose
        // originals' ids are made the same way.
        let original = IdempotentOriginal(level: .total, source: MessageSource(view: 3, origin: .max, seq: 7))
        let table = CheckpointCodec.encodeTable([.init(producer: "a", highest: 9, entries: [(UInt64(9), original)])][...], cut: ClusterPosition(view: 3, delivered: [7]))
        XCTAssertThrowsError(try CheckpointCodec.decodeTable(table))
    }
}
