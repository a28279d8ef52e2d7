import CompressNIO
import Foundation
import NIOCore
import PiglixWire
import PiglixTopics
import PiglixTestKit
import XCTest

/// The front end driven by curl over HTTP/2 with prior knowledge and over HTTP/1.1.
final class PublishSubscribeTests: XCTestCase {
    func testCurlH2PublishReachesWildcardSubscriberAsNDJSON() async throws {
        let live = try await LiveServer.start()
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=a.*"])
        try await subscriber.waitForText(#""type":"view""#)
        let published = try Curl.run(["--http2-prior-knowledge", "-d", "hello", "\(live.base)/v1/topics/a.b"], statusCode: true)
        XCTAssertEqual(published.httpCode, 202)
        let ack = try XCTUnwrap(ndjsonObjects(published.body).first)
        XCTAssertEqual(ack["ok"] as? Bool, true)
        let id = try XCTUnwrap(ack["id"] as? String)
        XCTAssertEqual(ack["delivery"] as? String, "fifo")
        _ = try Curl.run(["--http2-prior-knowledge", "-d", "other", "\(live.base)/v1/topics/b.b"])
        try await subscriber.waitForText(#""type":"message""#)
        let records = ndjsonObjects(subscriber.text)
        XCTAssertEqual(records.first?["type"] as? String, "view")
        XCTAssertEqual(records.first?["group"] as? String, "a.*")
        XCTAssertEqual(records.first?["primary"] as? Bool, true)
        let messages = records.filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.count, 1)
        XCTAssertEqual(messages[0]["topic"] as? String, "a.b")
        XCTAssertEqual(messages[0]["data"] as? String, "hello")
        XCTAssertEqual(messages[0]["id"] as? String, id)
        XCTAssertEqual(messages[0]["delivery"] as? String, "fifo")
        subscriber.stop()
        await live.stop()
    }

    func testHTTP11ServerSentEventsCarryEventIdAndNoCacheHeaders() async throws {
        let live = try await LiveServer.start()
        let subscriber = try CurlStream(["--http1.1", "-i", "-H", "Accept: text/event-stream", "\(live.base)/v1/subscribe?topic=s.>"])
        try await subscriber.waitForText("event: view")
        let head = subscriber.text.lowercased()
        XCTAssertTrue(head.hasPrefix("http/1.1 200"))
        XCTAssertTrue(head.contains("content-type: text/event-stream"))
        XCTAssertTrue(head.contains("cache-control: no-cache"))
        XCTAssertTrue(head.contains("x-accel-buffering: no"))
        let result = try Curl.run(["--http1.1", "-H", "Piglix-Delivery: total", "-d", "deep", "\(live.base)/v1/topics/s.x.y"])
        let id = try XCTUnwrap(ndjsonObjects(result.text).first?["id"] as? String)
        try await subscriber.waitForText("event: message")
        XCTAssertTrue(subscriber.text.contains("event: message\nid: \(id)\ndata: {\"type\":\"message\",\"topic\":\"s.x.y\",\"id\":\"\(id)\",\"delivery\":\"total\",\"data\":\"deep\"}\n\n"))
        subscriber.stop()
        await live.stop()
    }

    func testBatchPublishGzipNDJSONAcksEachRecordInOrder() async throws {
        let live = try await LiveServer.start()
        let body = """
            {"topic":"b.one","data":"1"}
            this is not json
            {"topic":"b..bad","data":"x"}
            {"topic":"b.two","data_b64":"AAH/","delivery":"safe"}

            """
        var plain = ByteBuffer(string: body)
        let gzipped = try plain.compress(with: .gzip())
        let result = try Curl.run(
            ["--http2-prior-knowledge", "-H", "Content-Encoding: gzip", "-H", "Content-Type: application/x-ndjson",
             "--data-binary", "@-", "\(live.base)/v1/publish"],
            stdin: Data(gzipped.readableBytesView), statusCode: true)
        XCTAssertEqual(result.httpCode, 200)
        let acks = ndjsonObjects(result.body)
        XCTAssertEqual(acks.count, 4)
        XCTAssertEqual(acks[0]["ok"] as? Bool, true)
        XCTAssertEqual(acks[1]["ok"] as? Bool, false)
        XCTAssertEqual(acks[1]["status"] as? Int, 400)
        XCTAssertEqual(acks[2]["error"] as? String, "topic token 2 is empty")
        XCTAssertEqual(acks[3]["ok"] as? Bool, true)
        XCTAssertEqual(acks[3]["delivery"] as? String, "safe")

        let replay = try Curl.run(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=b.*&lastEventID=earliest", "--max-time", "1"])
        let messages = ndjsonObjects(replay.text).filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.map { $0["topic"] as? String }, ["b.one", "b.two"])
        XCTAssertEqual(messages[1]["data_b64"] as? String, "AAH/")
        await live.stop()
    }

    func testStreamingPublishAcksArriveWhileTheBodyIsStillOpen() async throws {
        let live = try await LiveServer.start()
        let publisher = try CurlStream([
            "--http2-prior-knowledge", "-X", "POST", "-T", "-", "-H", "Content-Type: application/x-ndjson", "\(live.base)/v1/publish",
        ])
        // Each write is padded so that curl sends it now.
        publisher.write("{\"topic\":\"st.a\",\"data\":\"first\"}\n")
        try await publisher.waitForText("\"ok\":true")
        XCTAssertTrue(publisher.isRunning, "the request body is still open")
        publisher.write("{\"topic\":\"st.a\",\"data\"\n")
        try await publisher.waitForText("\"ok\":false")
        publisher.write("{\"topic\":\"st.a\",\"data\":\"third\"}\n")
        try await publisher.waitForText("\"ok\":true", count: 2)
        publisher.closeInput()
        try await publisher.waitForExit()
        XCTAssertEqual(ndjsonObjects(publisher.text).map { $0["ok"] as? Bool }, [true, false, true])
        await live.stop()
    }

    func testResumeWithLastEventIDHeaderOrQueryLosesAndRepeatsNothing() async throws {
        let live = try await LiveServer.start()
        var ids: [String] = []
        for index in 0..<6 {
            let result = try Curl.run(["--http2-prior-knowledge", "-d", "m\(index)", "\(live.base)/v1/topics/r.t\(index % 2)"])
            ids.append(try XCTUnwrap(ndjsonObjects(result.text).first?["id"] as? String))
        }
        for useHeader in [true, false] {
            let url = "\(live.base)/v1/subscribe?topic=r.*" + (useHeader ? "" : "&lastEventID=\(ids[2])")
            let subscriber = try CurlStream(["--http2-prior-knowledge", "-i"] + (useHeader ? ["-H", "Last-Event-ID: \(ids[2])"] : []) + [url])
            try await subscriber.waitForText("\"type\":\"message\"", count: 3)
            XCTAssertTrue(subscriber.text.lowercased().contains("last-event-id: \(ids[5])"), "newest retained id in the response header")
            let body = subscriber.text.components(separatedBy: "\r\n\r\n").dropFirst().joined()
            let messages = ndjsonObjects(body).filter { $0["type"] as? String == "message" }
            XCTAssertEqual(messages.map { $0["data"] as? String }, ["m3", "m4", "m5"])
            subscriber.stop()
        }
        await live.stop()
    }

    func testGzipSubscribeStreamDecodesIncrementallyAsBytesArrive() async throws {
        let live = try await LiveServer.start()
        // No --compressed: the test reads the raw gzip bytes and inflates them itself.
        let subscriber = try CurlStream(["--http2-prior-knowledge", "-H", "Accept-Encoding: gzip", "\(live.base)/v1/subscribe?topic=z.>"])
        let decompressor = try BoundedDecompressor(.gzip, outputBytesMax: 1 << 20)
        var consumed = 0
        var decoded = ""
        func pump() throws {
            let data = subscriber.data
            guard data.count > consumed else { return }
            try decompressor.decompress(ByteBuffer(bytes: data[consumed...])) { decoded += String(buffer: $0) }
            consumed = data.count
        }
        // The first batch (the view record) says the subscription is live;
        // a publish before it would find no subscriber.
        let ready = ContinuousClock.now + .seconds(10)
        while !decoded.contains("\"type\":\"view\"") && ContinuousClock.now < ready {
            try pump()
            try await Task.sleep(for: .milliseconds(10))
        }
        for index in 0..<5 {
            _ = try Curl.run(["--http2-prior-knowledge", "-d", "batch \(index)", "\(live.base)/v1/topics/z.\(index)"])
            let deadline = ContinuousClock.now + .seconds(10)
            while !decoded.contains("\"data\":\"batch \(index)\"") && ContinuousClock.now < deadline {
                try pump()
                try await Task.sleep(for: .milliseconds(10))
            }
            XCTAssertTrue(decoded.contains("\"data\":\"batch \(index)\""), "batch \(index) decodes while the stream is open")
            XCTAssertTrue(subscriber.isRunning)
        }
        XCTAssertTrue(decoded.hasPrefix("{\"type\":\"view\""))
        subscriber.stop()
        await live.stop()
    }

    func testBinaryFrameSubscribeCarriesMessages() async throws {
        let live = try await LiveServer.start()
        let subscriber = try CurlStream(["--http2-prior-knowledge", "-H", "Accept: \(binaryFramesMediaType)", "\(live.base)/v1/subscribe?topic=bin"])
        try await subscriber.waitFor("view frame") { $0.data.count > 5 }
        _ = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/topics/bin"], stdin: Data([0, 159, 146, 150]))
        var records: [DeliveredRecord] = []
        try await subscriber.waitFor("message frame") { subscriber in
            var decoder = FrameDecoder(bodyBytesMax: 1 << 20)
            decoder.append(ByteBuffer(bytes: subscriber.data))
            records = []
            while let frame = try? decoder.next(), let record = try? DeliveredRecord.decode(frame: frame) { records.append(record) }
            return records.count >= 2
        }
        guard case .control(.view(let group, _, _, _)) = records[0] else { return XCTFail("first is a view") }
        XCTAssertEqual(group, "bin")
        guard case .message(let message) = records[1] else { return XCTFail("second is a message") }
        XCTAssertEqual(Array(message.payload.readableBytesView), [0, 159, 146, 150])
        subscriber.stop()
        await live.stop()
    }

    func testBinaryFramePublishGetsBinaryAcksInOrder() async throws {
        let live = try await LiveServer.start()
        var body = ByteBuffer()
        PublishRecord(topic: "f.one", payload: ByteBuffer(string: "1")).encodeFrame(into: &body)
        PublishRecord(topic: "f..bad", payload: ByteBuffer(string: "2")).encodeFrame(into: &body)
        PublishRecord(topic: "f.three", payload: ByteBuffer(bytes: [0xFF]), delivery: .safe).encodeFrame(into: &body)
        let result = try Curl.run(
            ["--http2-prior-knowledge", "-H", "Content-Type: \(binaryFramesMediaType)", "--data-binary", "@-", "\(live.base)/v1/publish"],
            stdin: Data(body.readableBytesView))
        var decoder = FrameDecoder(bodyBytesMax: 1024)
        decoder.append(ByteBuffer(bytes: result.stdout))
        var acks: [PublishAck] = []
        while let frame = try decoder.next() {
            XCTAssertEqual(frame.type, .ack)
            acks.append(try AckCodec.decodeFrame(frame.body))
        }
        XCTAssertEqual(acks.map(\.status), [202, 400, 200])
        XCTAssertEqual(acks[1].error, "topic token 2 is empty")
        XCTAssertEqual(acks[2].delivery, .safe)
        await live.stop()
    }

    func testCORSLetsBrowsersOnOtherOriginsRead() async throws {
        let live = try await LiveServer.start()
        let headers = try Curl.run(["-i", "-H", "Origin: http://example.test", "\(live.base)/healthz"]).text.lowercased()
        XCTAssertTrue(headers.contains("access-control-allow-origin: *"), headers)
        await live.stop()
    }

    /// A browser reads an error only with CORS headers; the problem's detail
    /// is the route's, not a wrapper's description.
    func testErrorsOnOtherOriginsCarryCORSHeadersAndTheirOwnDetail() async throws {
        let live = try await LiveServer.start()
        for (arguments, detail) in [
            (["-H", "Piglix-Delivery: bogus", "-d", "x", "\(live.base)/v1/topics/a.b"], "Piglix-Delivery bogus is not one of fifo, total, safe"),
            (["\(live.base)/v1/nowhere"], "no route for GET /v1/nowhere"),
        ] {
            let reply = try Curl.run(["-i", "-H", "Origin: http://example.test"] + arguments).text
            XCTAssertTrue(reply.lowercased().contains("access-control-allow-origin: *"), reply)
            XCTAssertTrue(reply.lowercased().contains("content-type: application/problem+json"), reply)
            XCTAssertTrue(reply.contains(#""detail":"\#(detail)"#), reply)
            XCTAssertFalse(reply.contains("EditedHTTPError"), reply)
        }
        await live.stop()
    }

    func testHeartbeatsArriveOnIdleStreams() async throws {
        let live = try await LiveServer.start { $0.heartbeatInterval = .milliseconds(100) }
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=idle"])
        try await subscriber.waitForText("{\"type\":\"heartbeat\"}", count: 2)
        subscriber.stop()
        await live.stop()
    }

    func testGracefulShutdownEndsEveryStreamWithAnEndRecord() async throws {
        let live = try await LiveServer.start()
        let h2 = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=g"])
        let h1 = try CurlStream(["--http1.1", "-H", "Accept: text/event-stream", "\(live.base)/v1/subscribe?topic=g"])
        try await h2.waitForText("\"type\":\"view\"")
        try await h1.waitForText("event: view")
        await live.stop()
        try await h2.waitForExit()
        try await h1.waitForExit()
        XCTAssertTrue(h2.text.contains("{\"type\":\"end\",\"reason\":\"the server is shutting down\"}"))
        XCTAssertTrue(h1.text.contains("event: end\n"))
    }

    func testStatusEndpoints() async throws {
        let live = try await LiveServer.start { $0.broker.nodeID = "node-a" }
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=st.*"])
        try await subscriber.waitForText("\"type\":\"view\"")
        let cluster = try XCTUnwrap(ndjsonObjects(try Curl.run(["\(live.base)/v1/cluster"]).text).first)
        XCTAssertEqual(cluster["node"] as? String, "node-a")
        XCTAssertEqual(cluster["members"] as? [String], ["node-a"])
        XCTAssertEqual(cluster["primary"] as? Bool, true)
        XCTAssertEqual(cluster["view"] as? Int, 1)
        let groups = try XCTUnwrap(ndjsonObjects(try Curl.run(["\(live.base)/v1/groups"]).text).first?["groups"] as? [[String: Any]])
        XCTAssertEqual(groups.first?["group"] as? String, "st.*")
        XCTAssertEqual(groups.first?["local_subscribers"] as? Int, 1)
        XCTAssertEqual(try Curl.run(["\(live.base)/healthz"], statusCode: true).httpCode, 200)
        XCTAssertEqual(try Curl.run(["\(live.base)/readyz"], statusCode: true).httpCode, 200)
        let metrics = try Curl.run(["\(live.base)/metrics"]).text
        XCTAssertTrue(metrics.contains("# TYPE piglix_subscriptions gauge\npiglix_subscriptions 1\n"))
        subscriber.stop()
        await live.stop()
    }
}
