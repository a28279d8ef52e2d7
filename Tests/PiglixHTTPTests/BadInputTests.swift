import CompressNIO
import Foundation
import NIOCore
import PiglixTestKit
import XCTest

/// Every bad input gets a clear 4xx as problem+json and harms nobody else.
final class BadInputTests: XCTestCase {
    private func assertProblem(
        _ result: Curl.Result, status: Int, detailContains needle: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(result.httpCode, status, result.text, file: file, line: line)
        let problem = ndjsonObjects(result.body).first
        XCTAssertEqual(problem?["status"] as? Int, status, file: file, line: line)
        XCTAssertEqual(problem?["type"] as? String, "about:blank", file: file, line: line)
        let detail = problem?["detail"] as? String ?? ""
        XCTAssertTrue(detail.contains(needle), "detail \(detail) lacks \(needle)", file: file, line: line)
    }

    private func problemHeaders(_ arguments: [String]) throws -> String {
        try Curl.run(["-i"] + arguments).text.lowercased()
    }

    func testInvalidTopicAndPatternAre400NamingTheToken() async throws {
        let live = try await LiveServer.start()
        assertProblem(try Curl.run(["-d", "x", "\(live.base)/v1/topics/a..b"], statusCode: true), status: 400, detailContains: "topic token 2 is empty")
        assertProblem(try Curl.run(["-d", "x", "\(live.base)/v1/topics/a.*"], statusCode: true), status: 400, detailContains: "wildcard")
        assertProblem(
            try Curl.run(["-d", "x", "\(live.base)/v1/topics/%24piglix.views"], statusCode: true), status: 400, detailContains: "reserved")
        assertProblem(
            try Curl.run(["\(live.base)/v1/subscribe?topic=sen*.temp"], statusCode: true), status: 400,
            detailContains: "topic token 1 mixes a wildcard")
        assertProblem(try Curl.run(["\(live.base)/v1/subscribe?topic=a.>.b"], statusCode: true), status: 400, detailContains: "last token")
        assertProblem(try Curl.run(["\(live.base)/v1/subscribe"], statusCode: true), status: 400, detailContains: "at least one pattern")
        assertProblem(
            try Curl.run(["-H", "Piglix-Delivery: fast", "-d", "x", "\(live.base)/v1/topics/a"], statusCode: true), status: 400,
            detailContains: "fifo, total, safe")
        assertProblem(
            try Curl.run(["\(live.base)/v1/subscribe?topic=a&lastEventID=nope"], statusCode: true), status: 400,
            detailContains: "Last-Event-ID")
        assertProblem(
            try Curl.run(["\(live.base)/v1/subscribe?topic=a&overflow=maybe"], statusCode: true), status: 400, detailContains: "drop-oldest")
        assertProblem(
            try Curl.run(["\(live.base)/v1/subscribe?topic=a&batch_bytes=1"], statusCode: true), status: 400, detailContains: "batch_bytes")
        XCTAssertTrue(try problemHeaders(["-d", "x", "\(live.base)/v1/topics/a..b"]).contains("content-type: application/problem+json"))
        await live.stop()
    }

    func testOversizeMessageIs413() async throws {
        let live = try await LiveServer.start { $0.broker.messageBytesMax = 1000; $0.broker.subscriberQueueBytesMax = 1 << 20 }
        let big = Data(repeating: UInt8(ascii: "x"), count: 1001)
        assertProblem(
            try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/topics/a"], stdin: big, statusCode: true),
            status: 413, detailContains: "limit of 1000 bytes")
        assertProblem(
            try Curl.run(["--http1.1", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "\(live.base)/v1/topics/a"], stdin: big, statusCode: true),
            status: 413, detailContains: "limit of 1000 bytes")
        // In a stream, the oversize record gets an error ack and the stream goes on.
        let record = "{\"topic\":\"a\",\"data\":\"\(String(repeating: "y", count: 1001))\"}\n{\"topic\":\"a\",\"data\":\"ok\"}\n"
        let stream = try Curl.run(["--http2-prior-knowledge", "-T", "-", "-X", "POST", "\(live.base)/v1/publish"], stdin: Data(record.utf8))
        XCTAssertEqual(ndjsonObjects(stream.text).map { $0["status"] as? Int }, [413, nil])
        await live.stop()
    }

    func testDecompressionBombIs413WithBoundedMemory() async throws {
        let live = try await LiveServer.start { $0.decompressedBytesMax = 8 << 20 }
        // 256 MiB of newlines-free zeros in about 256 KiB of gzip.
        var zeros = ByteBuffer(repeating: UInt8(ascii: "0"), count: 256 << 20)
        let bomb = try zeros.compress(with: .gzip())
        zeros = ByteBuffer()
        let before = residentBytes()
        for path in ["/v1/publish", "/v1/topics/bomb"] {
            assertProblem(
                try Curl.run(
                    ["--http2-prior-knowledge", "-H", "Content-Encoding: gzip", "--data-binary", "@-", "\(live.base)\(path)"],
                    stdin: Data(bomb.readableBytesView), statusCode: true),
                status: 413, detailContains: "decompresses to over the limit")
        }
        // Streamed without Content-Length, it is one oversize record: an error ack, no memory growth.
        let streamed = try Curl.run(
            ["--http2-prior-knowledge", "-X", "POST", "-T", "-", "-H", "Content-Encoding: gzip", "\(live.base)/v1/publish"],
            stdin: Data(bomb.readableBytesView))
        XCTAssertEqual(ndjsonObjects(streamed.text).first?["status"] as? Int, 413)
        let grown = residentBytes() - before
        XCTAssertLessThan(grown, 128 << 20, "memory grew by \(grown) bytes while inflating a 256 MiB bomb")
        // The node still serves.
        XCTAssertEqual(try Curl.run(["-d", "fine", "\(live.base)/v1/topics/after"], statusCode: true).httpCode, 202)
        await live.stop()
    }

    func testCorruptGzipIs400() async throws {
        let live = try await LiveServer.start()
        assertProblem(
            try Curl.run(["-H", "Content-Encoding: gzip", "-d", "not gzip at all", "\(live.base)/v1/publish"], statusCode: true),
            status: 400, detailContains: "not valid gzip")
        await live.stop()
    }

    func testUnknownContentEncodingIs415() async throws {
        let live = try await LiveServer.start()
        assertProblem(
            try Curl.run(["-H", "Content-Encoding: br", "-d", "x", "\(live.base)/v1/publish"], statusCode: true), status: 415,
            detailContains: "Content-Encoding br")
        assertProblem(
            try Curl.run(["-H", "Content-Encoding: zstd", "-d", "x", "\(live.base)/v1/topics/a"], statusCode: true), status: 415,
            detailContains: "gzip, deflate")
        await live.stop()
    }

    func testMalformedNDJSONRecordGetsErrorAckAndStreamContinues() async throws {
        let live = try await LiveServer.start()
        let body = "{\"topic\":\"m\",\"data\":\"1\"}\n{oops}\n{\"topic\":\"m\",\"nope\":1,\"data\":\"x\"}\n{\"topic\":\"m\",\"data\":\"2\"}\n"
        let result = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: Data(body.utf8))
        let acks = ndjsonObjects(result.text)
        XCTAssertEqual(acks.map { $0["ok"] as? Bool }, [true, false, false, true])
        XCTAssertEqual(acks[2]["error"] as? String, "unknown field \"nope\"; a record has topic, data or data_b64, delivery, headers, producer, sequence")
        await live.stop()
    }

    func testTooManyPatternsIs400AndTooManySubscriptionsIs429() async throws {
        let live = try await LiveServer.start { $0.broker.patternsPerSubscriptionMax = 2; $0.broker.subscriptionsMax = 1 }
        assertProblem(
            try Curl.run(["\(live.base)/v1/subscribe?topic=a&topic=b&topic=c"], statusCode: true), status: 400, detailContains: "limit is 2")
        let holder = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=a"])
        try await holder.waitForText("\"type\":\"view\"")
        let refused = try Curl.run(["-i", "\(live.base)/v1/subscribe?topic=b"])
        XCTAssertTrue(refused.text.hasPrefix("HTTP/1.1 429"), refused.text)
        XCTAssertTrue(refused.text.lowercased().contains("retry-after: 1"))
        holder.stop()
        await live.stop()
    }

    func testUnacceptableAcceptIs406AndUnknownRouteIs404() async throws {
        let live = try await LiveServer.start()
        assertProblem(
            try Curl.run(["-H", "Accept: application/xml", "\(live.base)/v1/subscribe?topic=a"], statusCode: true), status: 406,
            detailContains: "text/event-stream")
        assertProblem(try Curl.run(["\(live.base)/v2/nothing"], statusCode: true), status: 404, detailContains: "no route")
        await live.stop()
    }

    /// RFC 9110 §15.5.6: a path served with other methods is a 405 naming
    /// them in `Allow`, over HTTP/1.1 and HTTP/2 alike.
    func testAMethodThePathDoesNotTakeIs405WithAllow() async throws {
        let live = try await LiveServer.start()
        for (method, path, allow) in [
            ("GET", "/v1/topics/a.b", "POST"), ("DELETE", "/v1/subscribe?topic=a", "GET"), ("PUT", "/v1/publish", "POST"),
            ("POST", "/healthz", "GET"), ("POST", "/", "GET, HEAD"),
        ] {
            for version in ["--http1.1", "--http2-prior-knowledge"] {
                let reply = try Curl.run([version, "-i", "-X", method, "\(live.base)\(path)"]).text
                XCTAssertTrue(reply.hasPrefix(version == "--http1.1" ? "HTTP/1.1 405" : "HTTP/2 405"), "\(method) \(path): \(reply)")
                XCTAssertTrue(reply.lowercased().contains("allow: \(allow.lowercased())\r\n"), "\(method) \(path): \(reply)")
                XCTAssertTrue(reply.contains("application/problem+json"), reply)
                XCTAssertTrue(reply.contains("does not take \(method)"), reply)
            }
        }
        assertProblem(try Curl.run(["-X", "DELETE", "\(live.base)/v1/nowhere"], statusCode: true), status: 404, detailContains: "no route")
        await live.stop()
    }

    /// A subscriber that reads nothing fills its own queue and loses its own
    /// oldest messages; the fast subscriber and the publisher never wait.
    func testSlowSubscriberDoesNotStallFastOne() async throws {
        let live = try await LiveServer.start { $0.broker.subscriberQueueMessagesMax = 5000 }
        let stalled = try startStalledSubscriber(port: live.port, pattern: "load")
        defer { stalled.terminate() }
        let fast = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=load"])
        try await fast.waitForText("\"type\":\"view\"")
        try await waitFor { live.server.broker.subscriptionCount == 2 }

        // 20 rounds of 1000: the fast subscriber keeps up round by round, the
        // stalled one falls 20000 behind, past its queue of 5000.
        let payload = String(repeating: "p", count: 500)
        let started = ContinuousClock.now
        for round in 0..<20 {
            var body = ""
            for index in 0..<1000 { body += "{\"topic\":\"load\",\"data\":\"\(round * 1000 + index) \(payload)\"}\n" }
            let result = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: Data(body.utf8))
            XCTAssertEqual(result.text.components(separatedBy: "\"ok\":true").count - 1, 1000)
            // The view record plus every message so far, one line each.
            try await fast.waitForLines(1 + (round + 1) * 1000, timeout: .seconds(30))
        }
        let elapsed = ContinuousClock.now - started
        XCTAssertFalse(fast.text.contains("\"type\":\"gap\""), "the fast subscriber lost nothing")
        // 20000 published, at most 5000 queued, a few MB in socket buffers.
        XCTAssertGreaterThanOrEqual(live.server.broker.stats.dropped, 5_000, "the stalled subscriber dropped its oldest")
        XCTAssertLessThan(elapsed, .seconds(60))
        fast.stop()
        stalled.terminate()
        await live.stop()
    }

    func testShutdownIsNotHeldUpByAClientThatStoppedReading() async throws {
        let live = try await LiveServer.start {
            $0.shutdownGracePeriod = .seconds(1)
            $0.broker.subscriberQueueBytesMax = 64 << 20
        }
        let stalled = try startStalledSubscriber(port: live.port, pattern: "stuck")
        defer { stalled.terminate() }
        try await waitFor { live.server.broker.subscriptionCount == 1 }
        var body = ""
        for index in 0..<20_000 { body += "{\"topic\":\"stuck\",\"data\":\"\(index) \(String(repeating: "s", count: 500))\"}\n" }
        _ = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: Data(body.utf8))
        let started = ContinuousClock.now
        await live.stop()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
    }

    func testDisconnectPolicyEndsAStalledStreamWithAReason() async throws {
        let live = try await LiveServer.start { $0.broker.subscriberQueueMessagesMax = 5 }
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=d&overflow=disconnect&linger_ms=500"])
        try await subscriber.waitForText("\"type\":\"view\"")
        var body = ""
        for index in 0..<50 { body += "{\"topic\":\"d\",\"data\":\"\(index)\"}\n" }
        _ = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: Data(body.utf8))
        try await subscriber.waitForText("\"type\":\"end\"")
        XCTAssertTrue(subscriber.text.contains("slow consumer"))
        try await subscriber.waitForExit()
        await live.stop()
    }

    /// Idempotent publish over HTTP (docs/protocol.md): both headers or none,
    /// valid values, a retry acked with the original id, 409 past the window.
    func testIdempotencyHeadersAreCheckedAndARetryGetsTheOriginalId() async throws {
        let live = try await LiveServer.start()
        let url = "\(live.base)/v1/topics/a.b"
        assertProblem(
            try Curl.run(["-H", "Piglix-Producer: p", "-d", "x", url], statusCode: true), status: 400, detailContains: "needs Piglix-Sequence")
        assertProblem(
            try Curl.run(["-H", "Piglix-Sequence: 1", "-d", "x", url], statusCode: true), status: 400, detailContains: "needs Piglix-Producer")
        assertProblem(
            try Curl.run(["-H", "Piglix-Producer: p", "-H", "Piglix-Sequence: 0", "-d", "x", url], statusCode: true), status: 400,
            detailContains: "from 1 to 18446744073709551615")
        assertProblem(
            try Curl.run(["-H", "Piglix-Producer: a/b", "-H", "Piglix-Sequence: 1", "-d", "x", url], statusCode: true), status: 400,
            detailContains: "only letters, digits")
        let first = try Curl.run(["-H", "Piglix-Producer: p", "-H", "Piglix-Sequence: 5000", "-d", "x", url], statusCode: true)
        XCTAssertEqual(first.httpCode, 202, first.text)
        XCTAssertEqual(first.json["delivery"] as? String, "total")
        let retry = try Curl.run(
            ["--http2-prior-knowledge", "-H", "Piglix-Producer: p", "-H", "Piglix-Sequence: 5000", "-d", "y", url], statusCode: true)
        XCTAssertEqual(retry.httpCode, 202, retry.text)
        XCTAssertEqual(retry.json["id"] as? String, first.json["id"] as? String)
        assertProblem(
            try Curl.run(["-H", "Piglix-Producer: p", "-H", "Piglix-Sequence: 1", "-d", "x", url], statusCode: true), status: 409,
            detailContains: "older than the window")
        // The same in a batch: the NDJSON fields, one ack per record.
        let body = #"{"topic":"a.b","data":"z","producer":"p","sequence":5000}"# + "\n"
            + #"{"topic":"a.b","data":"z","Piglix-Producer":"p","Piglix-Sequence":"1"}"# + "\n"
        let acks = ndjsonObjects(try Curl.run(["--data-binary", "@-", "\(live.base)/v1/publish"], stdin: Data(body.utf8)).text)
        XCTAssertEqual(acks.first?["id"] as? String, first.json["id"] as? String)
        XCTAssertEqual(acks.last?["status"] as? Int, 409)
        await live.stop()
    }
}

/// A raw HTTP/1.1 client, with a tiny receive buffer, that asks for a
/// subscribe stream and then never reads; returns once the request is sent.
func startStalledSubscriber(port: Int, pattern: String) throws -> Process {
    let stalled = Process()
    stalled.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    stalled.arguments = [
        "python3", "-c",
        """
        import socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", \(port)))
        s.sendall(b"GET /v1/subscribe?topic=\(pattern) HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        print("ready", flush=True); time.sleep(60)
        """,
    ]
    let output = Pipe()
    stalled.standardOutput = output
    try stalled.run()
    _ = output.fileHandleForReading.availableData  // "ready"
    return stalled
}

func waitFor(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { XCTFail("condition not met in time"); return }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Resident set size of this process, from /proc.
func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return kilobytes * 1024
}
