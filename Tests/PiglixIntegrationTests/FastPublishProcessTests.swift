import Foundation
import PiglixTestKit
import XCTest

/// The single publish answered on the event loop (FastPublish.swift), in a
/// real `piglix serve` with its metrics and its shutdown.
final class FastPublishProcessTests: XCTestCase {
    func testFastPublishesCountInTheRequestMetricsLikeRoutedOnes() async throws {
        let server = try await startTestServer()
        let base = "http://127.0.0.1:\(server.port)"
        for _ in 0..<3 {
            XCTAssertEqual(Curl.request(["--http2-prior-knowledge", "-d", "x", "\(base)/v1/topics/m.t"]).httpCode, 202)
        }
        // The router's: HTTP/1.1 does not take the fast path.
        XCTAssertEqual(Curl.request(["--http1.1", "-d", "x", "\(base)/v1/topics/m.t"]).httpCode, 202)
        let metrics = try Curl.run(["\(base)/metrics"]).text
        XCTAssertTrue(
            metrics.contains(#"hb_requests{http_route="/v1/topics/{topic}",http_request_method="POST",http_response_status_code="202"} 4"#),
            metrics)
        XCTAssertTrue(metrics.contains("piglix_messages_published_total 4"), metrics)
    }

    /// h2load's 400 streams in flight when SIGTERM comes: the node still
    /// stops, and every answer is a 202 or a 503 (shutting down).
    func testANodeUnderSinglePublishLoadStopsOnSIGTERM() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/h2load") else {
            throw XCTSkip("h2load (nghttp2-client) is not installed")
        }
        let server = try await startTestServer()
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("fastpublish-\(server.port).body")
        try Data(repeating: UInt8(ascii: "x"), count: 128).write(to: body)
        let load = Process()
        load.executableURL = URL(fileURLWithPath: "/usr/bin/h2load")
        load.arguments = ["-D", "3", "-c", "4", "-m", "100", "-d", body.path, "http://127.0.0.1:\(server.port)/v1/topics/load.t"]
        let output = Pipe()
        load.standardOutput = output
        load.standardError = FileHandle.nullDevice
        try load.run()
        try await Task.sleep(for: .seconds(1))
        server.terminate()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        load.waitUntilExit()
        try await poll("the node exits after SIGTERM", timeout: .seconds(10)) { !server.isRunning }
        let codes = try XCTUnwrap(text.split(separator: "\n").first { $0.contains("status codes:") }, text)
        XCTAssertTrue(codes.contains(" 0 3xx, 0 4xx"), "\(codes)")
        XCTAssertFalse(codes.contains("status codes: 0 2xx"), "\(codes)")
    }
}
