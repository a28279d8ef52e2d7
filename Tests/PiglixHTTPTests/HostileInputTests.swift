import CompressNIO
import Foundation
import NIOCore
import PiglixTestKit
import XCTest

/// Input that is hostile rather than merely wrong: it gets a 4xx and
/// cannot corrupt what other clients receive.
final class HostileInputTests: XCTestCase {
    /// Sends raw HTTP/1.1 bytes (python3's socket: curl cannot send a
    /// malformed chunk size) and returns the status line and body.
    private func raw(_ port: Int, _ request: String) throws -> (status: String, body: String) {
        let script = """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", \(port))); s.settimeout(5)
            s.sendall(sys.stdin.buffer.read())
            data = b""
            try:
                while b"\\r\\n\\r\\n" not in data or len(data.split(b"\\r\\n\\r\\n", 1)[1]) == 0:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
            except socket.timeout:
                pass
            sys.stdout.buffer.write(data)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        try? input.fileHandleForWriting.write(contentsOf: Data(request.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        return (parts[0].components(separatedBy: "\r\n")[0], parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    func testMalformedChunkSizeOnSinglePublishIs400NotA500() async throws {
        let live = try await LiveServer.start()
        for size in ["zz", "-1", "100000000000000000000"] {
            let reply = try raw(
                live.port,
                "POST /v1/topics/a.b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\nhello\r\n0\r\n\r\n")
            XCTAssertEqual(reply.status, "HTTP/1.1 400 Bad Request", "chunk size \(size): \(reply)")
            XCTAssertTrue(reply.body.contains("malformed request body"), reply.body)
        }
        let missingCRLF = try raw(live.port, "POST /v1/topics/a.b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n")
        XCTAssertEqual(missingCRLF.status, "HTTP/1.1 400 Bad Request", "\(missingCRLF)")
        await live.stop()
    }

    func testUserHeadersOverTheLimitsAreRefusedOnSinglePublish() async throws {
        let live = try await LiveServer.start()
        let many = (1...300).flatMap { ["-H", "Piglix-Header-h\($0): v"] }
        let tooMany = try Curl.run(many + ["-d", "x", "\(live.base)/v1/topics/h.t"], statusCode: true)
        XCTAssertEqual(tooMany.httpCode, 400, tooMany.text)
        XCTAssertTrue(tooMany.body.contains("300 headers, the limit is 32"), tooMany.body)
        let long = try Curl.run(
            ["-H", "Piglix-Header-big: \(String(repeating: "v", count: 70_000))", "-d", "x", "\(live.base)/v1/topics/h.t"], statusCode: true)
        XCTAssertEqual(long.httpCode, 400, String(long.text.prefix(300)))
        // Nothing of either reached the history a binary subscriber would replay.
        let replay = try Curl.run(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=h.*&lastEventID=earliest", "--max-time", "1"])
        XCTAssertFalse(replay.text.contains("\"type\":\"message\""), replay.text)
        await live.stop()
    }

    func testTruncatedGzipBodyIsRefusedAndPublishesNothingUnacked() async throws {
        let live = try await LiveServer.start()
        var plain = ByteBuffer(string: (0..<1000).map { "{\"topic\":\"gz.a\",\"data\":\"\($0)\"}\n" }.joined())
        let whole = try plain.compress(with: .gzip())
        let half = Data(whole.readableBytesView.prefix(whole.readableBytes / 2))
        // A batch (Content-Length) is decompressed before anything is published.
        let batch = try Curl.run(["-H", "Content-Encoding: gzip", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: half, statusCode: true)
        XCTAssertEqual(batch.httpCode, 400, batch.text)
        XCTAssertTrue(batch.body.contains("truncated"), batch.body)
        var one = ByteBuffer(string: String(repeating: "hello ", count: 500))
        let single = try one.compress(with: .gzip())
        let singleHalf = Data(single.readableBytesView.prefix(single.readableBytes / 2))
        let reply = try Curl.run(["-H", "Content-Encoding: gzip", "--data-binary", "@-", "\(live.base)/v1/topics/gz.b"], stdin: singleHalf, statusCode: true)
        XCTAssertEqual(reply.httpCode, 400, reply.text)
        let replay = try Curl.run(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=gz.*&lastEventID=earliest", "--max-time", "1"])
        XCTAssertFalse(replay.text.contains("\"type\":\"message\""), "nothing was published: \(replay.text.prefix(300))")
        // A stream: what was acked was published; it ends with an error ack.
        let stream = try Curl.run(
            ["-H", "Content-Encoding: gzip", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "\(live.base)/v1/publish"], stdin: half)
        let acks = ndjsonObjects(stream.text)
        XCTAssertEqual(acks.last?["ok"] as? Bool, false)
        XCTAssertTrue((acks.last?["error"] as? String ?? "").contains("truncated"), stream.text.suffix(200).description)
        let okCount = acks.filter { $0["ok"] as? Bool == true }.count
        let published = try Curl.run(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=gz.*&lastEventID=earliest", "--max-time", "1"])
        XCTAssertEqual(ndjsonObjects(published.text).filter { $0["type"] as? String == "message" }.count, okCount)
        await live.stop()
    }
}
