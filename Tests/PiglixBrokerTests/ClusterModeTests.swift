import NIOCore
import PiglixBroker
import PiglixTopics
import PiglixWire
import XCTest

@testable import PiglixGroups

/// The broker's cluster mode over an in-process group layer: the first
/// subscriber of a pattern joins its group, the last one leaves it, and a
/// publish reaches subscribers only through the layer's deliveries.
final class ClusterModeTests: XCTestCase {
    private func makeBroker() async throws -> (Broker, FakeGroupLayer) {
        let layer = FakeGroupLayer()
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        return (broker, layer)
    }

    private func record(_ topic: String, _ text: String, _ delivery: DeliveryLevel = .fifo) -> PublishRecord {
        PublishRecord(topic: topic, payload: ByteBuffer(string: text), delivery: delivery)
    }

    func testFirstSubscriberJoinsTheGroupAndTheLastLeavesIt() async throws {
        let (broker, layer) = try await makeBroker()
        let pattern = try broker.parsePatterns(["g.>"])
        let first = try await broker.open(patterns: pattern, options: .init(overflow: .dropOldest))
        let second = try await broker.open(patterns: pattern, options: .init(overflow: .dropOldest))
        // Every node also joins the idempotence, work queue and lock groups at start (docs/patterns.md).
        XCTAssertEqual(layer.state.withLock { $0.joins.map(\.name) }, ["$piglix.idempotence", "$piglix.queues", "$piglix.locks", "g.>"])
        first.cancel()
        XCTAssertEqual(layer.state.withLock { $0.leaves.count }, 0)
        second.cancel()
        XCTAssertEqual(layer.state.withLock { $0.leaves.map(\.name) }, ["g.>"])
    }

    func testPublishIsDeliveredThroughTheGroupLayerWithAClusterId_P6() async throws {
        let (broker, _) = try await makeBroker()
        let subscription = try await broker.open(patterns: broker.parsePatterns(["a.*"]), options: .init(overflow: .dropOldest))
        let results = await broker.publish([record("a.b", "1"), record("x.y", "elsewhere"), record("a.c", "2", .safe)], session: 7)
        let receipts = try results.map { try $0.get() }
        XCTAssertEqual(receipts.map(\.delivery), [.fifo, .fifo, .safe])
        XCTAssertEqual(receipts.map(\.status), [202, 202, 200])
        XCTAssertNotNil(receipts[0].id.position, "a cluster publish is acked with a cluster position id")
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(batch.messages.map { String(buffer: $0.payload) }, ["1", "2"])
        XCTAssertEqual(batch.messages.map(\.delivery), [.fifo, .safe])
    }

    /// A group that cannot become ready (no checkpoint ever comes): a
    /// subscriber asking for history starts after the join timeout with a
    /// `gap` record naming the group, never a silently empty history.
    func testSubscriberAskingHistoryOfAGroupThatCannotBecomeReadyGetsAGapRecord_P10() async throws {
        let (broker, layer) = try await makeBroker()
        layer.state.withLock { $0.holdTransfers = true }
        let started = ContinuousClock.now
        let earliest = try await broker.open(
            patterns: broker.parsePatterns(["h.>"]), options: .init(overflow: .dropOldest, start: .earliest), joinTimeout: .milliseconds(200))
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(200))
        let batch = await earliest.next(maxBytes: 1 << 20)
        let gaps = batch.views.compactMap { record -> String? in
            if case .gap(_, let reason) = record { return reason }
            return nil
        }
        XCTAssertEqual(gaps.count, 1, "\(batch.views)")
        XCTAssertTrue(gaps.first?.contains("history of group h.>") ?? false, "\(gaps)")
    }

    func testRefusedPublishMapsToUnavailable() async throws {
        let (broker, layer) = try await makeBroker()
        layer.refusePublishes(.notInPrimary)
        let results = await broker.publish([record("a.b", "1")], session: 1)
        guard case .failure(let error) = results[0] else { return XCTFail("expected a refusal, got \(results[0])") }
        XCTAssertEqual(error.status, 503)
    }

    func testInvalidRecordFailsAloneAndTheRestArePublishedInOrder() async throws {
        let (broker, _) = try await makeBroker()
        let results = await broker.publish([record("ok.1", "a"), record("bad..topic", "b"), record("ok.2", "c")], session: 1)
        XCTAssertNoThrow(try results[0].get())
        XCTAssertThrowsError(try results[1].get())
        XCTAssertNoThrow(try results[2].get())
    }

    func testStatusAndCountersComeFromTheGroupLayer() async throws {
        let (broker, _) = try await makeBroker()
        XCTAssertTrue(broker.isClustered)
        XCTAssertEqual(broker.clusterStatus?.members, ["n1"])
        XCTAssertNotNil(broker.clusterCounters)
        XCTAssertTrue(broker.isReady)
        let subscription = try await broker.open(patterns: broker.parsePatterns(["s.*"]), options: .init(overflow: .dropOldest))
        let groups = await broker.allGroups()
        withExtendedLifetime(subscription) {}
        XCTAssertEqual(groups.map(\.pattern), ["s.*"])
        XCTAssertEqual(groups.first?.localSubscribers, 1)
    }
}
