import Foundation
import PiglixTestKit
import XCTest

/// `POST /v1/topics/{topic}` over HTTP/2 is answered on the event loop when
/// it is plain (FastPublish.swift); these tests hold it to the router's
/// answers, which every other request (here: one with an `Origin` header)
/// still gets.
final class FastPublishTests: XCTestCase {
    /// Status, the header names (less the router's CORS ones and the
    /// changing values) and the body with its id taken out.
    private struct Answer: Equatable, CustomStringConvertible {
        var status: Int
        var headers: [String: String]
        var body: String
        var description: String { "\(status) \(headers) \(body)" }
    }

    private func post(_ base: String, topic: String, body: String, extra: [String] = [], http2: Bool = true) throws -> Answer {
        let protocolFlag = http2 ? ["--http2-prior-knowledge"] : ["--http1.1"]
        let reply = try Curl.run(protocolFlag + ["-i", "--data-binary", body] + extra + ["\(base)/v1/topics/\(topic)"])
        let text = reply.text.replacingOccurrences(of: "\r\n", with: "\n")
        let parts = text.components(separatedBy: "\n\n")
        let head = parts[0].split(separator: "\n")
        let status = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            if name.hasPrefix("access-control-") || name == "vary" { continue }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = ["date", "piglix-message-id", "content-length"].contains(name) ? "…" : value
            if name == "content-length" { XCTAssertEqual(Int(value), parts.dropFirst().joined(separator: "\n\n").utf8.count, text) }
        }
        let bodyText = parts.dropFirst().joined(separator: "\n\n").replacingOccurrences(
            of: #""id":"[^"]*""#, with: #""id":"…""#, options: .regularExpression)
        return Answer(status: status, headers: headers, body: bodyText)
    }

    func testPlainSinglePublishIsAnsweredExactlyAsTheRouterAnswersIt() async throws {
        let live = try await LiveServer.start { $0.broker.messageBytesMax = 64 }
        let cases: [(topic: String, body: String, extra: [String])] = [
            ("a.b", "hello", []),
            ("a.b", "", []),
            ("a.b", "safe one", ["-H", "Piglix-Delivery: safe"]),
            ("a.b", "total one", ["-H", "Piglix-Delivery:  TOTAL "]),
            ("a.b", "bad level", ["-H", "Piglix-Delivery: bogus"]),
            ("a..b", "bad topic", []),
            ("a.%62", "percent-encoded", []),
            ("a.b", String(repeating: "x", count: 65), []),
            ("a.b", "typed", ["-H", "Content-Type: application/octet-stream"]),
        ]
        for c in cases {
            let fast = try post(live.base, topic: c.topic, body: c.body, extra: c.extra)
            let routed = try post(live.base, topic: c.topic, body: c.body, extra: c.extra + ["-H", "Origin: http://example.test"])
            XCTAssertEqual(fast, routed, "\(c.topic) \(c.extra) \(c.body.count) bytes")
            XCTAssertNotEqual(fast.status, 0)
        }
        await live.stop()
    }

    func testFastPublishesReachTheSubscriberInPublishOrderWithTheirIds_P6() async throws {
        let live = try await LiveServer.start()
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=fp.*"])
        try await subscriber.waitForText(#""type":"view""#)
        var ids: [String] = []
        for i in 0..<20 {
            let reply = try Curl.run(["--http2-prior-knowledge", "-d", "m\(i)", "\(live.base)/v1/topics/fp.t"], statusCode: true)
            XCTAssertEqual(reply.httpCode, 202, reply.body)
            ids.append(try XCTUnwrap(reply.json["id"] as? String))
        }
        try await subscriber.waitForText(#""type":"message""#, count: 20)
        let messages = ndjsonObjects(subscriber.text).filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.compactMap { $0["data"] as? String }, (0..<20).map { "m\($0)" })
        XCTAssertEqual(messages.compactMap { $0["id"] as? String }, ids)
        subscriber.stop()
        await live.stop()
    }

    func testRoutedAndFastStreamsShareOneConnection() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nghttp") else { throw XCTSkip("no /usr/bin/nghttp (nghttp2-client)") }
        let live = try await LiveServer.start()
        let subscriber = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=c.*"])
        try await subscriber.waitForText(#""type":"view""#)
        // nghttp sends the three POSTs as streams of one connection; the
        // query sends the second to the router.
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("fast-\(live.port).body")
        try Data("hi".utf8).write(to: body)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nghttp")
        process.arguments = ["-d", body.path, "\(live.base)/v1/topics/c.t", "\(live.base)/v1/topics/c.u?via=router", "\(live.base)/v1/topics/c.v"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertEqual(ndjsonObjects(text).filter { $0["ok"] as? Bool == true }.count, 3, text)
        try await subscriber.waitForText(#""type":"message""#, count: 3)
        let topics = Set(ndjsonObjects(subscriber.text).compactMap { $0["topic"] as? String })
        XCTAssertEqual(topics, ["c.t", "c.u", "c.v"])
        subscriber.stop()
        await live.stop()
    }
}
