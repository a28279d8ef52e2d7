import NIOCore
import PiglixCluster
import PiglixTopics
import PiglixWire
import XCTest

@testable import PiglixBroker
@testable import PiglixGroups

/// Idempotent publish (docs/patterns.md, "Idempotent publish"): a retry of a
/// record already accepted is acked with the original's id and level and is
/// not delivered again; past the window it is refused (409); the table
/// travels with the idempotence group's checkpoint.
final class IdempotenceTests: XCTestCase {
    private func record(
        _ topic: String, _ text: String, producer: String? = "p1", sequence: UInt64 = 1, _ delivery: DeliveryLevel = .fifo
    ) -> PublishRecord {
        PublishRecord(topic: topic, payload: ByteBuffer(string: text), delivery: delivery, producer: producer, sequence: sequence)
    }

    private func texts(_ batch: SubscriptionBatch) -> [String] { batch.messages.map { String(buffer: $0.payload) } }

    // MARK: One node

    func testSingleNode_retryIsAckedWithTheOriginalIdAndDeliveredOnce() async throws {
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE)
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["a.>"]), options: .init(overflow: .dropOldest))
        let first = try broker.publish(record("a.b", "once", sequence: 7))
        XCTAssertEqual(first.delivery, .total, "an idempotent fifo record is delivered as total")
        XCTAssertFalse(first.duplicate)
        let retry = try broker.publish(record("a.b", "once again", sequence: 7))
        XCTAssertEqual(retry.id, first.id)
        XCTAssertEqual(retry.delivery, .total)
        XCTAssertTrue(retry.duplicate)
        let other = try broker.publish(record("a.b", "next", sequence: 8))
        XCTAssertNotEqual(other.id, first.id)
        // A batch holding a retry and its original twice over.
        let batch = await broker.publish(
            [record("a.b", "nine", sequence: 9), record("a.b", "nine again", sequence: 9), record("a.b", "eight again", sequence: 8)],
            session: 1)
        let receipts = try batch.map { try $0.get() }
        XCTAssertEqual(receipts[1].id, receipts[0].id)
        XCTAssertEqual(receipts[2].id, other.id)
        // Ordinary records are never deduplicated.
        _ = try broker.publish(record("a.b", "plain", producer: nil, sequence: 0))
        _ = try broker.publish(record("a.b", "plain", producer: nil, sequence: 0))
        let delivered = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(delivered), ["once", "next", "nine", "plain", "plain"])
        XCTAssertEqual(broker.idempotenceStats.duplicatesSuppressed, 3)
    }

    func testSingleNode_safeOriginal_retryGetsTheOriginalLevelAndStatus() throws {
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE)
        let first = try broker.publish(record("a.b", "x", sequence: 1, .safe))
        let retry = try broker.publish(record("a.b", "x", sequence: 1, .fifo))
        XCTAssertEqual(retry.id, first.id)
        XCTAssertEqual(retry.delivery, .safe)
        XCTAssertEqual(retry.status, 200)
    }

    func testSingleNode_sequenceOlderThanTheWindowIsRefusedWith409() throws {
        var settings = BrokerSettings()
        settings.idempotence = IdempotenceLimits(windowSequences: 4, producersMax: 16)
        let broker = try Broker(settings: settings, epoch: 0xE)
        _ = try broker.publish(record("a.b", "x", sequence: 10))
        XCTAssertThrowsError(try broker.publish(record("a.b", "old", sequence: 6))) { error in
            guard let error = error as? PublishError, case .sequenceTooOld(let why) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(error.status, 409)
            XCTAssertTrue(why.contains("may or may not have been delivered"), why)
        }
        XCTAssertNoThrow(try broker.publish(record("a.b", "gap inside the window", sequence: 7)))
        XCTAssertEqual(broker.idempotenceStats.tooOldRefused, 1)
    }

    // MARK: Cluster mode (in-process group layer)

    private func makeClusterBroker() async throws -> (Broker, FakeGroupLayer) {
        let layer = FakeGroupLayer()
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        return (broker, layer)
    }

    /// The original and its retry both reach the group layer (one batch, so
    /// neither is answered from the table at entry): the retry is decided a
    /// duplicate at its delivery and acked with the original's id.
    func testCluster_retryDecidedAtDelivery_isAckedWithTheOriginalIdAndNotDelivered() async throws {
        let (broker, _) = try await makeClusterBroker()
        let subscription = try await broker.open(patterns: broker.parsePatterns(["a.*"]), options: .init(overflow: .dropOldest))
        let results = await broker.publish(
            [record("a.b", "first", sequence: 3), record("a.b", "retry", sequence: 3), record("a.b", "plain", producer: nil)], session: 1)
        let receipts = try results.map { try $0.get() }
        XCTAssertEqual(receipts[1].id, receipts[0].id)
        XCTAssertTrue(receipts[1].duplicate)
        XCTAssertEqual(receipts[0].delivery, .total)
        XCTAssertEqual(receipts[0].id.description, "v1.1", "the agreed id: the origin's count at the message, others 0")
        // A later retry is answered from the table at entry, with the same id.
        let later = try await broker.publish([record("a.b", "later", sequence: 3)], session: 2)[0].get()
        XCTAssertEqual(later.id, receipts[0].id)
        let delivered = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(delivered), ["first", "plain"])
    }

    func testCluster_idempotentPublishWaitsForTheIdempotenceState() async throws {
        let layer = FakeGroupLayer()
        layer.state.withLock { $0.holdTransfers = true }
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        let result = await broker.publish([record("a.b", "x"), record("a.b", "plain", producer: nil)], session: 1)
        guard case .failure(let error) = result[0] else { return XCTFail("\(result[0])") }
        XCTAssertEqual(error.status, 503)
        XCTAssertNoThrow(try result[1].get(), "ordinary records do not wait")
    }

    /// A joiner takes the provider's table from the idempotence group's
    /// checkpoint: a retry there gets the id the provider gave the original.
    func testCluster_checkpointCarriesTheTable_aRetryOnTheJoinerGetsTheOriginalId() async throws {
        let (provider, _) = try await makeClusterBroker()
        var ids: [PiglixWire.MessageID] = []
        for s in UInt64(1)...5 { ids.append(try await provider.publish([record("a.b", "m\(s)", sequence: s)], session: 1)[0].get().id) }
        _ = try await provider.publish([record("a.b", "q", producer: "other", sequence: 42)], session: 1)[0].get()
        var reader = provider.clusterCheckpoint(pattern: Broker.idempotencePattern)
        var chunks: [[UInt8]] = []
        while true {
            let (chunk, last) = reader.nextChunk(bytes: 40)  // small: several chunks
            chunks.append(chunk)
            if last { break }
        }
        XCTAssertGreaterThan(chunks.count, 1)

        let (joiner, _) = try await makeClusterBroker()
        for (i, chunk) in chunks.enumerated() {
            XCTAssertTrue(
                joiner.clusterApplyCheckpoint(
                    pattern: Broker.idempotencePattern, chunk: chunk, first: i == 0, last: i == chunks.count - 1))
        }
        for s in UInt64(1)...5 {
            let retry = try await joiner.publish([record("a.b", "again", sequence: s)], session: 9)[0].get()
            XCTAssertEqual(retry.id, ids[Int(s) - 1])
            XCTAssertTrue(retry.duplicate)
        }
        let fresh = try await joiner.publish([record("a.b", "new", sequence: 6)], session: 9)[0].get()
        XCTAssertFalse(fresh.duplicate)
        XCTAssertFalse(joiner.clusterApplyCheckpoint(pattern: Broker.idempotencePattern, chunk: Array(chunks[0].dropLast()), first: true, last: true))
    }

    // MARK: Codecs

    func testCheckpointTable_roundTrips_andReadsAsNoMessagesInThePlainFormat() throws {
        let producers: [CheckpointCodec.ProducerState] = [
            .init(producer: "a", highest: 9, entries: [(UInt64(9), IdempotentOriginal(level: .total, source: MessageSource(view: 3, origin: 1, seq: 7)))]),
            .init(
                producer: "billing:7", highest: 2,
                entries: [
                    (UInt64(1), IdempotentOriginal(level: .safe, source: MessageSource(view: 2, origin: 0, seq: 1))),
                    (UInt64(2), IdempotentOriginal(level: .total, source: MessageSource(view: 4, origin: 2, seq: 12))),
                ]),
        ]
        let cut = ClusterPosition(view: 4, delivered: [3, 0, 12])
        let bytes = CheckpointCodec.encodeTable(producers[...], cut: cut)
        let decoded = try XCTUnwrap(try CheckpointCodec.decodeTable(bytes))
        XCTAssertEqual(decoded.cut, cut)
        XCTAssertEqual(decoded.producers, producers)
        XCTAssertEqual(try CheckpointCodec.decode(bytes, topicLimits: .default).count, 0)
        XCTAssertNil(try CheckpointCodec.decodeTable(CheckpointCodec.encode([StoredMessage]())))
        for length in 5..<(bytes.count - 1) {
            XCTAssertThrowsError(try CheckpointCodec.decodeTable(Array(bytes.prefix(length))), "prefix of \(length) bytes")
        }
    }

    func testClusterPayload_carriesProducerAndSequence_ordinaryRecordsUnchanged() throws {
        let headers = [MessageHeader(name: "k", value: "v")]
        let idem = PublishRecord(
            topic: "t", payload: ByteBuffer(string: "hi"), delivery: .total, headers: headers, producer: "p-1", sequence: 1 << 40)
        let bytes = ClusterPayload.encode(idem)
        XCTAssertEqual(ClusterPayload.idempotence(of: bytes)?.producer, "p-1")
        XCTAssertEqual(ClusterPayload.idempotence(of: bytes)?.sequence, 1 << 40)
        let decoded = try XCTUnwrap(ClusterPayload.decode(bytes))
        XCTAssertEqual(decoded.headers, headers)
        XCTAssertEqual(String(buffer: decoded.payload), "hi")
        let plain = PublishRecord(topic: "t", payload: ByteBuffer(string: "hi"), headers: headers)
        XCTAssertNil(ClusterPayload.idempotence(of: ClusterPayload.encode(plain)))
        XCTAssertEqual(ClusterPayload.encode(plain).prefix(2), [0, 1])
    }
}
