import NIOCore
import PiglixBroker
import PiglixTopics
import PiglixWire
import XCTest

final class BrokerTests: XCTestCase {
    private func makeBroker(_ configure: (inout BrokerSettings) -> Void = { _ in }) throws -> Broker {
        var settings = BrokerSettings()
        configure(&settings)
        return try Broker(settings: settings, epoch: 0xE)
    }

    private func publish(_ broker: Broker, _ topic: String, _ text: String, _ delivery: DeliveryLevel = .fifo) throws -> MessageID {
        try broker.publish(PublishRecord(topic: topic, payload: ByteBuffer(string: text), delivery: delivery)).id
    }

    private func texts(_ batch: SubscriptionBatch) -> [String] {
        batch.messages.map { String(buffer: $0.payload) }
    }

    func testWildcardSubscriberGetsMatchingMessagesInPublishOrder_P6() async throws {
        let broker = try makeBroker()
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["a.*"]), options: .init(overflow: .dropOldest))
        _ = try publish(broker, "a.b", "1")
        _ = try publish(broker, "x.b", "not me")
        _ = try publish(broker, "a.c", "2")
        _ = try publish(broker, "a.b.c", "not me either")
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), ["1", "2"])
    }

    func testTwoPatternsMatchingOneMessageDeliverItOnce_P5() async throws {
        let broker = try makeBroker()
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["a.*", "a.>", "a.b"]), options: .init(overflow: .dropOldest))
        _ = try publish(broker, "a.b", "once")
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), ["once"])
    }

    func testResumeAfterIdReplaysExactlyTheRest() async throws {
        let broker = try makeBroker()
        var ids: [MessageID] = []
        for index in 0..<10 { ids.append(try publish(broker, index % 2 == 0 ? "r.even" : "r.odd", "\(index)")) }
        let subscription = try broker.subscribe(
            patterns: broker.parsePatterns(["r.*"]), options: .init(overflow: .dropOldest, start: .after(ids[3])))
        XCTAssertEqual(subscription.newestRetained, ids[9])
        _ = try publish(broker, "r.live", "10")
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), (4...10).map(String.init))
    }

    func testEarliestReplaysAllRetainedWithinPerTopicBound() async throws {
        let broker = try makeBroker { $0.retainedMessagesPerTopicMax = 3 }
        for index in 0..<5 { _ = try publish(broker, "h.t", "\(index)") }
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["h.>"]), options: .init(overflow: .dropOldest, start: .earliest))
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), ["2", "3", "4"])
    }

    func testGlobalRetentionBoundEvictsOldestAcrossTopics() async throws {
        let broker = try makeBroker { $0.retainedMessagesMax = 4 }
        for index in 0..<6 { _ = try publish(broker, "g.t\(index % 3)", "\(index)") }
        XCTAssertEqual(broker.stats.retainedMessages, 4)
        let subscription = try broker.subscribe(patterns: broker.parsePatterns([">"]), options: .init(overflow: .dropOldest, start: .earliest))
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), ["2", "3", "4", "5"])
    }

    /// Replay reads retention through a cursor: a never-reading subscriber
    /// holds at most its queue bound of history, and a reader gets all of
    /// it, in publish order, without a gap, then live messages after it.
    func testReplayStreamsHistoryUnderTheQueueBoundWithoutAGap() async throws {
        let broker = try makeBroker {
            $0.subscriberQueueMessagesMax = 100
            $0.retainedMessagesPerTopicMax = 100_000
        }
        for i in 0..<5_000 { _ = try publish(broker, i % 2 == 0 ? "r.even" : "r.odd", "\(i)") }
        _ = try publish(broker, "other.x", "not me")
        let idle = try broker.subscribe(patterns: broker.parsePatterns(["r.*"]), options: .init(overflow: .dropOldest, start: .earliest))
        XCTAssertLessThanOrEqual(broker.queuedMessages(idle.id), 100, "history beyond the queue bound stays in retention")
        let reader = try broker.subscribe(patterns: broker.parsePatterns(["r.*"]), options: .init(overflow: .dropOldest, start: .earliest))
        var got: [String] = []
        var publishedLive = false
        while got.count < 5_000 {
            let batch = await reader.next(maxBytes: 1 << 16)
            XCTAssertEqual(batch.lost, 0, "no gap")
            XCTAssertLessThanOrEqual(broker.queuedMessages(reader.id), 100)
            got += texts(batch)
            if got.count >= 2_500 && !publishedLive {
                _ = try publish(broker, "r.live", "live")
                publishedLive = true
            }
        }
        XCTAssertEqual(got, (0..<5_000).map { "\($0)" }, "all history, in publish order, before what came live")
        let next = await reader.next(maxBytes: 1 << 16)
        XCTAssertEqual(texts(next), ["live"])
        _ = idle
    }

    func testIdFromAnotherRunReplaysEverythingRetained() async throws {
        let broker = try makeBroker()
        _ = try publish(broker, "e.a", "0")
        let subscription = try broker.subscribe(
            patterns: broker.parsePatterns(["e.a"]),
            options: .init(overflow: .dropOldest, start: .after(MessageID(epoch: 0xF, sequence: 99))))
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(batch), ["0"])
    }

    func testDropOldestKeepsNewestAndCountsTheGap() async throws {
        let broker = try makeBroker { $0.subscriberQueueMessagesMax = 3 }
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["q"]), options: .init(overflow: .dropOldest))
        for index in 0..<10 { _ = try publish(broker, "q", "\(index)") }
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(batch.lost, 7)
        XCTAssertEqual(texts(batch), ["7", "8", "9"])
        XCTAssertEqual(broker.stats.dropped, 7)
    }

    func testDisconnectPolicyEndsTheStreamWithAReason() async throws {
        let broker = try makeBroker { $0.subscriberQueueMessagesMax = 2 }
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["q"]), options: .init(overflow: .disconnect))
        for index in 0..<3 { _ = try publish(broker, "q", "\(index)") }
        let batch = await subscription.next(maxBytes: 1 << 20)
        XCTAssertTrue(batch.messages.isEmpty)
        XCTAssertTrue(try XCTUnwrap(batch.end).hasPrefix("slow consumer"))
        // Others keep going.
        let other = try broker.subscribe(patterns: broker.parsePatterns(["q"]), options: .init(overflow: .disconnect))
        _ = try publish(broker, "q", "after")
        let otherBatch = await other.next(maxBytes: 1 << 20)
        XCTAssertEqual(texts(otherBatch), ["after"])
    }

    func testBatchesRespectMaxBytes() async throws {
        let broker = try makeBroker()
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["b"]), options: .init(overflow: .dropOldest))
        for _ in 0..<10 { _ = try publish(broker, "b", String(repeating: "x", count: 100)) }
        let first = await subscription.next(maxBytes: 400)
        XCTAssertGreaterThanOrEqual(first.messages.count, 1)
        XCTAssertLessThan(first.messages.count, 10)
        let second = await subscription.next(maxBytes: 1 << 20)
        XCTAssertEqual(first.messages.count + second.messages.count, 10)
    }

    func testLimitsAndInvalidInputAreNamedErrors() throws {
        let broker = try makeBroker {
            $0.messageBytesMax = 10
            $0.subscriptionsMax = 1
            $0.patternsPerSubscriptionMax = 2
            $0.subscriberQueueBytesMax = 100
        }
        XCTAssertThrowsError(try publish(broker, "a..b", "x")) { XCTAssertEqual(($0 as? PublishError)?.status, 400) }
        XCTAssertThrowsError(try publish(broker, "$piglix.views", "x")) { XCTAssertEqual(($0 as? PublishError)?.status, 400) }
        XCTAssertThrowsError(try publish(broker, "a", String(repeating: "x", count: 11))) {
            XCTAssertEqual($0 as? PublishError, .tooLarge(bytes: 11, max: 10))
        }
        XCTAssertThrowsError(try broker.parsePatterns(["a", "b", "c"])) { XCTAssertEqual(($0 as? SubscribeError)?.status, 400) }
        XCTAssertThrowsError(try broker.parsePatterns(["a.b*"])) { XCTAssertEqual(($0 as? SubscribeError)?.status, 400) }
        let first = try broker.subscribe(patterns: broker.parsePatterns(["a"]), options: .init(overflow: .dropOldest))
        XCTAssertThrowsError(try broker.subscribe(patterns: broker.parsePatterns(["a"]), options: .init(overflow: .dropOldest))) {
            XCTAssertEqual(($0 as? SubscribeError)?.status, 429)
        }
        first.cancel()
        XCTAssertNoThrow(try broker.subscribe(patterns: broker.parsePatterns(["a"]), options: .init(overflow: .dropOldest)))
    }

    func testSettingsValidationNamesTheBadValue() {
        var settings = BrokerSettings()
        settings.subscriberQueueBytesMax = 10
        XCTAssertThrowsError(try settings.validate()) { XCTAssertTrue("\($0)".contains("subscriber queue bytes")) }
    }

    func testShutdownEndsWaitingSubscribers() async throws {
        let broker = try makeBroker()
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["s"]), options: .init(overflow: .dropOldest))
        async let batch = subscription.next(maxBytes: 1000)
        try await Task.sleep(for: .milliseconds(20))
        broker.shutdown(reason: "bye")
        let ended = await batch
        XCTAssertEqual(ended.end, "bye")
        XCTAssertThrowsError(try publish(broker, "s", "late")) { XCTAssertEqual($0 as? PublishError, .shuttingDown) }
    }

    func testHeartbeatWakesIdleSubscriber() async throws {
        let broker = try makeBroker()
        let subscription = try broker.subscribe(patterns: broker.parsePatterns(["s"]), options: .init(overflow: .dropOldest))
        async let batch = subscription.next(maxBytes: 1000)
        try await Task.sleep(for: .milliseconds(20))
        broker.heartbeatTick()
        let beat = await batch
        XCTAssertTrue(beat.heartbeat)
        XCTAssertTrue(beat.messages.isEmpty)
    }

    func testLevelsAreCarriedOnOneNode() throws {
        let broker = try makeBroker()
        let receipt = try broker.publish(PublishRecord(topic: "l", payload: ByteBuffer(string: "x"), delivery: .safe))
        XCTAssertEqual(receipt.status, 200)
        XCTAssertEqual(try broker.publish(PublishRecord(topic: "l", payload: ByteBuffer(string: "x"), delivery: .total)).status, 202)
    }
}
