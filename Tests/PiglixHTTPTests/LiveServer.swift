import Foundation
import Logging
import NIOCore
import PiglixHTTP
import ServiceLifecycle
import XCTest

/// A real node on an ephemeral loopback port, in this process.
final class LiveServer: Sendable {
    let server: PiglixServer
    let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    var base: String { "http://127.0.0.1:\(port)" }

    static func start(_ configure: (inout ServerSettings) -> Void = { _ in }) async throws -> LiveServer {
        var settings = ServerSettings()
        settings.port = 0
        configure(&settings)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try PiglixServer(settings: settings, logger: logger)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let group = server.makeServiceGroup(gracefulShutdownSignals: []) { port in continuation.yield(port) }
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw XCTSkip("server did not start") }
        return LiveServer(server: server, port: port, group: group, task: task)
    }

    private init(server: PiglixServer, port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.group = group
        self.task = task
    }

    /// Graceful shutdown, as on SIGTERM.
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// curl, the independent HTTP/2 and HTTP/1.1 peer.
enum Curl {
    struct Result {
        var status: Int32
        var stdout: Data
        var text: String { String(decoding: stdout, as: UTF8.self) }
        /// `-w '%{http_code}'` appended by `run(…, statusCode: true)`.
        var httpCode: Int { Int(text.suffix(3)) ?? 0 }
        var body: String { String(text.dropLast(3)) }
    }

    static func run(_ arguments: [String], stdin: Data? = nil, statusCode: Bool = false) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "--max-time", "30"] + arguments + (statusCode ? ["-w", "%{http_code}"] : [])
        let output = Pipe()
        process.standardOutput = output
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: data)
    }
}

/// A long-running curl whose output is read as it arrives.
final class CurlStream: @unchecked Sendable {
    // @unchecked: `buffer` is only touched under `lock`; Process and Pipe are not Sendable.
    private let process = Process()
    private let output = Pipe()
    let input = Pipe()
    private let lock = NSLock()
    private var buffer = Data()
    private var newlines = 0
    private let writes = DispatchQueue(label: "curl-stdin")

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "-N"] + arguments
        process.standardOutput = output
        process.standardInput = input
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            let lines = data.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            self.lock.lock()
            self.buffer.append(data)
            self.newlines += lines
            self.lock.unlock()
        }
        try process.run()
    }

    var data: Data {
        lock.lock()
        defer { lock.unlock() }
        return buffer
    }

    var text: String { String(decoding: data, as: UTF8.self) }

    /// Newlines received so far (NDJSON records), counted as bytes arrive.
    var lineCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return newlines
    }

    func waitForLines(_ count: Int, timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + timeout
        while lineCount < count {
            if ContinuousClock.now > deadline {
                XCTFail("timed out waiting for \(count) lines; got \(lineCount)", file: file, line: line)
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Polls until `predicate` holds for the output so far, or fails at the deadline.
    @discardableResult
    func wait(
        for what: String, timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line,
        _ predicate: (Data) -> Bool
    ) async throws -> Data {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let current = data
            if predicate(current) { return current }
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("timed out waiting for \(what); got: \(text.prefix(2000))", file: file, line: line)
        throw CancellationError()
    }

    func waitForText(_ needle: String, count: Int = 1, timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line) async throws {
        try await wait(for: "\(count)× \(needle)", timeout: timeout, file: file, line: line) {
            String(decoding: $0, as: UTF8.self).components(separatedBy: needle).count - 1 >= count
        }
    }

    /// Writes to curl's standard input in order, off the caller's thread: a
    /// write blocks until curl has read it, and curl reads only as fast as
    /// the server takes the body, so a blocking write on a cooperative
    /// thread would starve the in-process server of the threads it needs.
    func write(_ text: String) {
        let handle = input.fileHandleForWriting
        let data = Data(text.utf8)
        writes.async { handle.write(data) }
    }

    func closeInput() {
        let handle = input.fileHandleForWriting
        writes.async { try? handle.close() }
    }

    var isRunning: Bool { process.isRunning }

    func waitForExit(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertFalse(process.isRunning, "curl did not exit")
    }

    func stop() {
        if process.isRunning { process.terminate() }
        output.fileHandleForReading.readabilityHandler = nil
    }

    deinit { stop() }
}

/// Parses NDJSON output into objects.
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}
