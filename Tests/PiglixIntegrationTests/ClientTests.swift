import NIOCore
import PiglixClient
import PiglixTestKit
import PiglixWire
import Synchronization
import XCTest

/// PiglixClient against a real `piglix serve` process.
final class ClientTests: XCTestCase {
    /// A client of a fresh server.
    private func startServer() async throws -> PiglixClient {
        PiglixClient(host: "127.0.0.1", port: try await startTestServer().port)
    }

    /// A server and a client that reconnects quickly, subscribed to
    /// `pattern`, once the subscription is live (its first view).
    private func startReconnectingSubscriber(_ pattern: String, format: StreamFormat) async throws -> (TestServer, PiglixClient, Collector) {
        let server = try await startTestServer()
        var settings = PiglixClientSettings()
        settings.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
        let client = PiglixClient(host: "127.0.0.1", port: server.port, settings: settings)
        let collector = Collector(client.subscribe(patterns: [pattern], format: format))
        addTeardownBlock { collector.cancel() }
        try await poll("the first view") { collector.views == 1 }
        return (server, client, collector)
    }

    /// Work queues through the client (docs/patterns.md, "Work queues"):
    /// two members share the messages; an ack answers per id.
    func test_queueSubscribers_shareTheMessages_andAckAnswersPerID() async throws {
        let client = try await startServer()
        let a = Collector(client.subscribe(patterns: ["wq.*"], format: .binary, options: SubscribeOptions(queue: "cq")))
        let b = Collector(client.subscribe(patterns: ["wq.*"], format: .ndjson, options: SubscribeOptions(queue: "cq")))
        defer {
            a.cancel()
            b.cancel()
        }
        // Members count once their stream is open: publish until both got one.
        var sent = 0
        try await poll("both members served", timeout: .seconds(15)) {
            sent += 1
            _ = try await client.publish(topic: "wq.x", payload: ByteBuffer(string: "job \(sent)"))
            return !a.messages.isEmpty && !b.messages.isEmpty
        }
        // Both are members now: ten more jobs go to them, once each (after
        // the poll's last job, in flight when it returned, has arrived).
        try await Task.sleep(for: .milliseconds(300))
        let before = a.messages.count + b.messages.count
        for i in 0..<10 { _ = try await client.publish(topic: "wq.y", payload: ByteBuffer(string: "more \(i)")) }
        try await poll("ten more jobs") { a.messages.count + b.messages.count >= before + 10 }
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(a.messages.count + b.messages.count, before + 10)
        let all = a.messages + b.messages
        XCTAssertEqual(Set(all.map(\.id)).count, all.count, "each job to one member")
        XCTAssertTrue(all.allSatisfy { $0.queue == "cq" && !$0.redelivered })
        let id = a.messages[0].id
        let results = try await client.ack(queue: "cq", ids: [id, id])
        XCTAssertEqual(results, [true, false])
        try await client.close()
    }

    func test_publish_thenSubscriberReceivesPayloadsInOrder_withTheAckedIDs() async throws {
        let client = try await startServer()
        let collector = Collector(client.subscribe(patterns: ["rt.*"], format: .binary))
        defer { collector.cancel() }
        try await poll("the subscriber got its view") { collector.views == 1 }

        var ids: [String] = []
        for index in 0..<3 {
            let ack = try await client.publish(topic: "rt.a", payload: ByteBuffer(string: "hello \(index)"))
            XCTAssertEqual(ack.status, 202)
            XCTAssertEqual(ack.delivery, .fifo)
            ids.append(try XCTUnwrap(ack.id))
        }
        let safe = try await client.publish(topic: "rt.b", payload: ByteBuffer(string: "stable"), delivery: .safe)
        XCTAssertEqual(safe.status, 200)
        try await poll("4 messages arrived") { collector.messages.count == 4 }
        XCTAssertEqual(collector.payloads, ["hello 0", "hello 1", "hello 2", "stable"])
        XCTAssertEqual(collector.messages.prefix(3).map(\.id), ids)
        XCTAssertEqual(collector.messages.map(\.topic), ["rt.a", "rt.a", "rt.a", "rt.b"])
        XCTAssertEqual(collector.messages.last?.delivery, .safe)
        try await client.close()
    }

    func test_publish_invalidTopic_throwsHTTP400WithProblemDetail() async throws {
        let client = try await startServer()
        do {
            _ = try await client.publish(topic: "a..b", payload: ByteBuffer(string: "x"))
            XCTFail("publishing to a..b succeeded")
        } catch PiglixClientError.http(let status, let detail) {
            XCTAssertEqual(status, 400)
            XCTAssertTrue(detail.contains("token"), "detail: \(detail)")
        }
        try await client.close()
    }

    func test_publishStream_acksEveryRecordInOrder_andAnErrorAckDoesNotEndTheStream() async throws {
        let client = try await startServer()
        let acks = Mutex<[PublishAck]>([])
        // A small window, so send() must wait for acks (backpressure).
        let stream = try await client.publishStream(inFlightMax: 16) { ack in acks.withLock { $0.append(ack) } }
        for index in 0..<500 {
            try await stream.send(topic: "ps.x", payload: ByteBuffer(string: "m\(index)"))
            if index == 250 { try await stream.send(topic: "ps..bad", payload: ByteBuffer(string: "bad")) }
        }
        let (acked, rejected) = try await stream.finish()
        XCTAssertEqual(acked, 500)
        XCTAssertEqual(rejected, 1)
        let all = acks.withLock { $0 }
        XCTAssertEqual(all.count, 501)
        XCTAssertFalse(all[251].ok)
        XCTAssertEqual(all[251].status, 400)
        XCTAssertTrue(all.enumerated().allSatisfy { $0.offset == 251 || ($0.element.ok && $0.element.id != nil) })
        XCTAssertEqual(Set(all.compactMap(\.id)).count, 500, "ids are unique")

        // Everything is retained: a subscriber from earliest replays it in order.
        let collector = Collector(client.subscribe(patterns: ["ps.>"], format: .binary, start: .earliest))
        defer { collector.cancel() }
        try await poll("500 messages replayed") { collector.messages.count == 500 }
        XCTAssertEqual(collector.payloads, (0..<500).map { "m\($0)" })
        XCTAssertEqual(collector.messages.map(\.id), all.compactMap(\.id))
        try await client.close()
    }

    func test_subscribe_ndjsonSSEBinaryAndGzip_allDecodeTheSameRecords() async throws {
        let client = try await startServer()
        let stream = try await client.publishStream()
        var expected: [String] = []
        for index in 0..<300 {
            // Text, JSON-hostile text and binary payloads.
            let payload: ByteBuffer
            switch index % 3 {
            case 0: payload = ByteBuffer(string: "plain \(index)")
            case 1: payload = ByteBuffer(string: "quote \" backslash \\ newline \n tab \t é \(index)")
            default: payload = ByteBuffer(bytes: [0xFF, 0x00, UInt8(index & 0xFF), 0x80])
            }
            expected.append(String(decoding: payload.readableBytesView, as: UTF8.self))
            try await stream.send(topic: "fmt.t", payload: payload, headers: index == 0 ? [MessageHeader(name: "k", value: "v")] : [])
        }
        try await stream.finish()

        let variants: [(StreamFormat, ContentCoding?)] = [
            (.binary, nil), (.ndjson, nil), (.sse, nil), (.binary, .gzip), (.ndjson, .gzip), (.sse, .deflate),
        ]
        for (format, coding) in variants {
            let collector = Collector(client.subscribe(patterns: ["fmt.*"], format: format, start: .earliest, compression: coding))
            defer { collector.cancel() }
            try await poll("300 messages in \(format) \(coding?.rawValue ?? "identity")") { collector.messages.count >= 300 }
            let messages = collector.messages
            XCTAssertEqual(messages.count, 300, "\(format) \(String(describing: coding))")
            XCTAssertEqual(messages.map { String(decoding: $0.payload.readableBytesView, as: UTF8.self) }, expected, "\(format)")
            XCTAssertEqual(messages.map { Array($0.payload.readableBytesView) }[2], [0xFF, 0x00, 2, 0x80], "\(format)")
            XCTAssertEqual(messages.first?.headers, [MessageHeader(name: "k", value: "v")], "\(format)")
            XCTAssertNil(collector.error)
        }
        try await client.close()
    }

    func test_subscribe_afterAnID_resumesWithoutLossOrDuplicates() async throws {
        let client = try await startServer()
        var ids: [String] = []
        for index in 0..<10 {
            ids.append(try await client.publish(topic: "resume.a", payload: ByteBuffer(string: "\(index)")).id!)
        }
        let collector = Collector(client.subscribe(patterns: ["resume.a"], start: .after(ids[4])))
        defer { collector.cancel() }
        try await poll("5 messages after the 5th") { collector.messages.count >= 5 }
        _ = try await client.publish(topic: "resume.a", payload: ByteBuffer(string: "live"))
        try await poll("the live message") { collector.messages.count >= 6 }
        XCTAssertEqual(collector.payloads, ["5", "6", "7", "8", "9", "live"])
        try await client.close()
    }

    func test_subscription_afterServerKilledAndRestarted_reconnectsAndGetsTheNewRunsMessages() async throws {
        let (server, subscriberClient, collector) = try await startReconnectingSubscriber("rs.>", format: .binary)

        let publisher = PiglixClient(host: "127.0.0.1", port: server.port)
        for index in 0..<5 { _ = try await publisher.publish(topic: "rs.a", payload: ByteBuffer(string: "old \(index)")) }
        try await poll("5 messages from the first run") { collector.messages.count == 5 }

        server.kill()
        _ = try await startTestServer(port: server.port)
        // The subscriber reconnects on its own (a second view) and resumes
        // with an id the new run does not know, so it gets all the new run retains.
        try await poll("the subscriber reconnected", timeout: .seconds(15)) { collector.views >= 2 }
        for index in 0..<5 { _ = try await publisher.publish(topic: "rs.a", payload: ByteBuffer(string: "new \(index)")) }
        try await poll("5 messages from the second run") { collector.messages.count >= 10 }
        XCTAssertEqual(collector.payloads, (0..<5).map { "old \($0)" } + (0..<5).map { "new \($0)" })
        XCTAssertEqual(Set(collector.messages.map(\.id)).count, 10)
        XCTAssertNil(collector.error)
        try await publisher.close()
        try await subscriberClient.close()
    }

    func test_subscription_afterGracefulShutdown_getsEndRecord_thenResumesOnTheNextRun() async throws {
        let (server, client, collector) = try await startReconnectingSubscriber("gs.*", format: .ndjson)
        _ = try await client.publish(topic: "gs.a", payload: ByteBuffer(string: "before"))
        try await poll("the first message") { collector.messages.count == 1 }

        server.terminate()
        try await poll("an end record") { collector.controls.contains { if case .end = $0 { return true } else { return false } } }
        _ = try await startTestServer(port: server.port)
        try await poll("the subscriber reconnected", timeout: .seconds(15)) { collector.views >= 2 }
        _ = try await client.publish(topic: "gs.a", payload: ByteBuffer(string: "after"))
        try await poll("the message of the second run") { collector.messages.count >= 2 }
        XCTAssertEqual(collector.payloads, ["before", "after"])
        try await client.close()
    }
}
