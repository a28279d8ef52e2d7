import Foundation
import PiglixTestKit
import XCTest

/// The lock routes' refusals (docs/protocol.md, "Locks"): each bound and bad
/// input is a clear problem+json, in process on one node.
final class LockRouteTests: XCTestCase {
    private func problem(_ result: Curl.Result, _ status: Int, _ needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.httpCode, status, result.text, file: file, line: line)
        let detail = ndjsonObjects(result.body).first?["detail"] as? String ?? ""
        XCTAssertTrue(detail.contains(needle), "detail \(detail) lacks \(needle)", file: file, line: line)
    }

    func testBadNamesTokensAndFormatsAreClear4xx() async throws {
        let live = try await LiveServer.start()
        problem(Curl.request(["-X", "POST", "\(live.base)/v1/locks/a%2Fb"]), 400, "lock name byte 2")
        problem(Curl.request(["-X", "POST", "\(live.base)/v1/locks/\(String(repeating: "x", count: 129))"]), 400, "1 to 128 bytes")
        problem(Curl.request(["-X", "POST", "-H", "Accept: image/png", "\(live.base)/v1/locks/a"]), 406, "names none")
        problem(Curl.request(["-X", "DELETE", "\(live.base)/v1/locks/a"]), 400, "token")
        problem(Curl.request(["-X", "DELETE", "\(live.base)/v1/locks/a?token=0"]), 400, "fencing token")
        problem(Curl.request(["-X", "DELETE", "\(live.base)/v1/locks/a?token=3"]), 404, "no one holds lock a")
        let list = Curl.json("\(live.base)/v1/locks")
        XCTAssertEqual(list?["ready"] as? Bool, true)
        XCTAssertGreaterThan(list?["next_token"] as? Int ?? 0, 1_600_000_000_000_000, "a single node's tokens start from the wall clock (ms × 1000)")
    }

    func testBoundsAre429_locksWaitersAndStreamsPerConnection() async throws {
        let live = try await LiveServer.start { settings in
            settings.broker.locks.table = .init(locksMax: 1, waitersMax: 1)
        }
        let holder = try CurlStream(["-X", "POST", "\(live.base)/v1/locks/one"])
        try await holder.waitForText("\"granted\"")
        problem(Curl.request(["-X", "POST", "\(live.base)/v1/locks/two"]), 429, "locks bound")
        let waiter = try CurlStream(["-X", "POST", "\(live.base)/v1/locks/one"])
        try await waiter.waitForText("\"waiting\"")
        problem(Curl.request(["-X", "POST", "\(live.base)/v1/locks/one"]), 429, "waiters bound")
        holder.stop()
        waiter.stop()

        let perConnection = try await LiveServer.start { settings in
            settings.broker.locks.streamsPerConnectionMax = 1
        }
        // Two streams on one HTTP/2 connection (nghttp multiplexes them):
        // the second is refused. nghttp ends itself after 2 s (`-t 2`).
        let nghttp = Process()
        nghttp.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        nghttp.arguments = ["nghttp", "-H", ":method: POST", "-t", "2", "\(perConnection.base)/v1/locks/x", "\(perConnection.base)/v1/locks/y"]
        let output = Pipe()
        nghttp.standardOutput = output
        nghttp.standardError = FileHandle.nullDevice
        do { try nghttp.run() } catch { throw XCTSkip("nghttp (nghttp2-client) is not installed: \(error)") }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        nghttp.waitUntilExit()
        XCTAssertEqual(text.components(separatedBy: "\"granted\"").count - 1, 1, text)
        XCTAssertTrue(text.contains("per-connection bound"), text)
    }
}
