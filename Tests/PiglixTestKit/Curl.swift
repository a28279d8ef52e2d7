import Foundation
import XCTest

/// curl, the independent HTTP/2 and HTTP/1.1 peer: one request, run to its end.
public enum Curl {
    public struct Result {
        /// curl's exit status (-1 when it could not be started).
        public var exitStatus: Int32
        public var stdout: Data
        public var text: String { String(decoding: stdout, as: UTF8.self) }
        /// The HTTP status, from `-w '%{http_code}'` appended by `run(…, statusCode: true)`
        /// (and by `request`); 0 when there was no answer.
        public var httpCode: Int { Int(text.suffix(3)) ?? 0 }
        /// The output before the status code.
        public var body: String { String(text.dropLast(3)) }
        /// The body as one JSON object (empty when it is not one).
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    }

    /// `curl -s --max-time TIMEOUT ARGUMENTS`, with `stdin` as its input.
    public static func run(_ arguments: [String], stdin: Data? = nil, statusCode: Bool = false, timeout: Int = 30) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "--max-time", String(timeout)] + arguments + (statusCode ? ["-w", "%{http_code}"] : [])
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let input = Pipe()
        process.standardInput = input
        try process.run()
        // A curl that exits early closes its stdin: a broken pipe is its answer, not a crash.
        if let stdin { try? input.fileHandleForWriting.write(contentsOf: stdin) }
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(exitStatus: process.terminationStatus, stdout: data)
    }

    /// A request whose HTTP status matters (`httpCode`); never throws.
    public static func request(_ arguments: [String], timeout: Int = 10) -> Result {
        (try? run(arguments, statusCode: true, timeout: timeout)) ?? Result(exitStatus: -1, stdout: Data())
    }

    /// GET `url` over HTTP/2 with prior knowledge: the JSON object of a 200 answer.
    public static func json(_ url: String) -> [String: Any]? {
        let reply = request(["--http2-prior-knowledge", url], timeout: 2)
        return reply.httpCode == 200 ? reply.json : nil
    }

    /// Publishes one message over HTTP/2 with prior knowledge. A `503` that
    /// says the message was not taken (outside the primary component for a
    /// moment, or flow control) is retried after a pause, as `Retry-After`
    /// asks; any other answer is returned.
    public static func publish(_ base: String, topic: String, data: String, level: String = "fifo", retries: Int = 20) -> Result {
        var reply = Result(exitStatus: -1, stdout: Data())
        for _ in 0...retries {
            reply = request(["--http2-prior-knowledge", "-H", "Piglix-Delivery: \(level)", "-d", data, "\(base)/v1/topics/\(topic)"])
            guard reply.httpCode == 503, reply.body.contains("not in the primary component") || reply.body.contains("pending queue full") else {
                return reply
            }
            usleep(200_000)
        }
        return reply
    }
}

/// A long-running curl whose output is collected as it arrives: a streaming
/// subscriber, or a streaming publisher fed by ``write(_:)`` whose acks are
/// collected as records.
public final class CurlStream: Sendable {
    private struct Received {
        var bytes = Data()
        var newlines = 0
    }

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let received = Locked(Received())
    private let writes = DispatchQueue(label: "curl-stdin")

    /// `curl -s -N ARGUMENTS`.
    public init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "-N"] + arguments
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.nullDevice
        let received = self.received
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            let lines = data.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            received.withLock {
                $0.bytes.append(data)
                $0.newlines += lines
            }
        }
        try process.run()
    }

    /// `curl -sN --http2-prior-knowledge` to `url`: a subscriber, or with
    /// `upload` a streaming POST of its standard input (no Content-Length).
    public convenience init(http2 url: String, headers: [String] = [], upload: Bool = false) throws {
        try self.init(["--http2-prior-knowledge"] + (upload ? ["-X", "POST", "-T", "-"] : []) + headers.flatMap { ["-H", $0] } + [url])
    }

    public var data: Data { received.withLock { $0.bytes } }
    public var text: String { String(decoding: data, as: UTF8.self) }
    /// Newlines received so far (NDJSON records), counted as bytes arrive.
    public var lineCount: Int { received.withLock { $0.newlines } }

    /// The NDJSON records so far.
    public var records: [[String: Any]] { ndjsonObjects(text) }
    public var messages: [[String: Any]] { records.filter { $0["type"] as? String == "message" } }
    public var payloads: [String] { messages.compactMap { $0["data"] as? String } }
    public var views: [[String: Any]] { records.filter { $0["type"] as? String == "view" } }

    /// Polls until `condition` holds, or fails the test at the deadline.
    public func waitFor(
        _ what: String, timeout: Duration = .seconds(15), file: StaticString = #filePath, line: UInt = #line,
        _ condition: (CurlStream) -> Bool
    ) async throws {
        try await poll(
            what, timeout: timeout, interval: .milliseconds(10), detail: "curl got: \(self.text.suffix(2000))", file: file, line: line
        ) { condition(self) }
    }

    public func waitForLines(_ count: Int, timeout: Duration = .seconds(15), file: StaticString = #filePath, line: UInt = #line) async throws {
        try await waitFor("\(count) lines", timeout: timeout, file: file, line: line) { $0.lineCount >= count }
    }

    public func waitForText(_ needle: String, count: Int = 1, timeout: Duration = .seconds(15), file: StaticString = #filePath, line: UInt = #line)
        async throws
    {
        try await waitFor("\(count)× \(needle)", timeout: timeout, file: file, line: line) {
            $0.text.components(separatedBy: needle).count - 1 >= count
        }
    }

    /// The first record (a `view`) says the subscription is live.
    public func waitUntilLive() async throws { try await waitFor("the first view record") { !$0.views.isEmpty } }

    /// curl reads an upload from stdin in blocks of up to 64 KiB and waits
    /// for a full block: each write is padded with empty lines (which NDJSON
    /// and the server skip) so curl sends it at once.
    ///
    /// Written in order off the caller's thread: a write blocks until curl
    /// has read it, and curl reads only as fast as the server takes the
    /// body, so a blocking write on a cooperative thread would starve an
    /// in-process server of the threads it needs.
    public func write(_ text: String) {
        let handle = input.fileHandleForWriting
        let data = Data((text + String(repeating: "\n", count: 256 * 1024)).utf8)
        writes.async { try? handle.write(contentsOf: data) }
    }

    public func closeInput() {
        let handle = input.fileHandleForWriting
        writes.async { try? handle.close() }
    }

    public var isRunning: Bool { process.isRunning }

    public func waitForExit(timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertFalse(process.isRunning, "curl did not exit", file: file, line: line)
    }

    /// Ends curl (SIGKILL: a SIGTERM from here was seen to leave it
    /// running) and stops watching its output before the pipe closes.
    public func stop() {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        output.fileHandleForReading.readabilityHandler = nil
    }

    /// Ends curl at once: its connection closes, as when a client dies.
    public func kill() { stop() }

    deinit { stop() }
}

/// The JSON objects of NDJSON text, skipping lines that are not JSON objects.
public func ndjsonObjects(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { line in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}
