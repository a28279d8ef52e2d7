import Foundation
import PiglixClient
import XCTest

/// A node under test on a port: in this process (the HTTP tests'
/// `LiveServer`) or a `piglix serve` child (``TestServer``).
public protocol NodeUnderTest: AnyObject {
    var port: Int { get }
}

extension NodeUnderTest {
    /// `http://127.0.0.1:PORT`.
    public var base: String { "http://127.0.0.1:\(port)" }
}

/// A `piglix serve` child process, optionally in a network namespace and
/// with its output in a log file: killed (SIGCONT first, in case it was
/// stopped, then SIGKILL) when dropped.
public final class PiglixProcess: Sendable {
    /// `$PIGLIX_BIN`, else `<package root>/.build/debug/piglix` (build it first
    /// with `swift build --product piglix`).
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["PIGLIX_BIN"], !path.isEmpty { return path }
        return Repo.path(".build/debug/piglix")
    }

    private let process = Process()

    /// Starts `piglix ARGUMENTS`; fails the test when there is no binary.
    public init(
        _ arguments: [String], netns: String? = nil, log: URL? = nil, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let binary = Self.binaryPath
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            XCTFail("no piglix binary at \(binary): run `swift build --product piglix` first, or set PIGLIX_BIN", file: file, line: line)
            throw TestServerError.binaryMissing(binary)
        }
        if let netns {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", netns, binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        if let log {
            if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: log)
            handle.seekToEndOfFile()
            process.standardError = handle
            process.standardOutput = handle
        }
        try process.run()
    }

    public var isRunning: Bool { process.isRunning }
    public var processIdentifier: Int32 { process.processIdentifier }
    public var terminationStatus: Int32 { process.terminationStatus }

    /// SIGKILL: no `end` record, connections just drop.
    public func kill() { signalAndWait(SIGKILL) }

    /// SIGTERM: graceful shutdown, subscribers get an `end` record.
    public func terminate() { signalAndWait(SIGTERM) }

    public func pause() { if process.isRunning { Foundation.kill(process.processIdentifier, SIGSTOP) } }
    public func resume() { if process.isRunning { Foundation.kill(process.processIdentifier, SIGCONT) } }

    private func signalAndWait(_ signal: Int32) {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        resume()
        kill()
    }
}

/// A real `piglix serve` on a loopback port, for client and script tests.
public final class TestServer: NodeUnderTest, Sendable {
    public let port: Int
    private let process = Locked<PiglixProcess?>(nil)

    public init(port: Int? = nil) throws {
        self.port = try port ?? freePort()
    }

    /// Starts the node and waits (with a deadline) until it accepts connections.
    public func start(extraArguments: [String] = [], file: StaticString = #filePath, line: UInt = #line) async throws {
        let started = try PiglixProcess(
            ["serve", "--listen", "127.0.0.1:\(port)", "--log-level", "warning"] + extraArguments, file: file, line: line)
        process.withLock { $0 = started }
        let port = self.port
        try await poll("piglix serve listens on \(port)", timeout: .seconds(20), file: file, line: line) {
            guard started.isRunning else { throw TestServerError.exited(started.terminationStatus) }
            let probe = PiglixClient(host: "127.0.0.1", port: port)
            defer { Task { try? await probe.close() } }
            do {
                try await probe.connect()
                return true
            } catch {
                return false
            }
        }
    }

    /// The `piglix serve` process id (0 before start), e.g. to read its /proc status.
    public var processIdentifier: Int32 { process.withLock { $0 }?.processIdentifier ?? 0 }

    /// Whether the `piglix serve` process has not exited.
    public var isRunning: Bool { process.withLock { $0 }?.isRunning ?? false }

    /// SIGKILL: no `end` record, the connection just drops.
    public func kill() { process.withLock { $0 }?.kill() }

    /// SIGTERM: graceful shutdown, subscribers get an `end` record.
    public func terminate() { process.withLock { $0 }?.terminate() }
}

extension XCTestCase {
    /// Starts a ``TestServer`` (on `port`, else a free one, with
    /// `arguments` added to `serve`'s) that is killed when the test ends.
    public func startTestServer(
        port: Int? = nil, arguments: [String] = [], file: StaticString = #filePath, line: UInt = #line
    ) async throws -> TestServer {
        let server = try TestServer(port: port)
        addTeardownBlock { server.kill() }
        try await server.start(extraArguments: arguments, file: file, line: line)
        return server
    }
}
