import Foundation
import NIOCore
import PiglixClient
import PiglixWire
import Synchronization
import XCTest

/// A real `piglix serve` process on a loopback port, for client tests.
///
/// The binary is `$PIGLIX_BIN`, else `<package root>/.build/debug/piglix`
/// (build it first with `swift build --product piglix`).
final class TestServer {
    let port: Int
    private var process: Process?

    static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["PIGLIX_BIN"], !path.isEmpty { return path }
        // <root>/Tests/PiglixIntegrationTests/TestServer.swift
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/piglix").path
    }

    init(port: Int? = nil) throws {
        self.port = try port ?? Self.freePort()
    }

    /// Starts the node and waits (with a deadline) until it accepts connections.
    func start(extraArguments: [String] = []) async throws {
        let path = Self.binaryPath
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail("no piglix binary at \(path): run `swift build --product piglix` first, or set PIGLIX_BIN")
            throw TestServerError.binaryMissing(path)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--log-level", "warning"] + extraArguments
        try process.run()
        self.process = process
        try await poll("piglix serve listens on \(port)", timeout: .seconds(20)) {
            guard process.isRunning else { throw TestServerError.exited(process.terminationStatus) }
            let probe = PiglixClient(host: "127.0.0.1", port: self.port)
            defer { Task { try? await probe.close() } }
            do {
                try await probe.connect()
                return true
            } catch {
                return false
            }
        }
    }

    /// SIGKILL: no `end` record, the connection just drops.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM: graceful shutdown, subscribers get an `end` record.
    func terminate() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    deinit {
        if let process, process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerError.noPort }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { throw TestServerError.noPort }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

enum TestServerError: Error {
    case binaryMissing(String)
    case exited(Int32)
    case noPort
    case timeout(String)
}

/// Polls `condition` until it holds or `timeout` passes (nats-server's `checkFor`).
func poll(
    _ what: String, timeout: Duration = .seconds(10), interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now >= deadline {
            XCTFail("timed out after \(timeout) waiting until \(what)")
            throw TestServerError.timeout(what)
        }
        try await Task.sleep(for: interval)
    }
}

/// Consumes a subscription in a task and keeps what it got, for polling.
final class Collector: Sendable {
    private final class Box: Sendable {
        let state = Mutex<(messages: [DeliveredMessage], controls: [ControlRecord], error: String?)>(([], [], nil))
    }
    private let box = Box()
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(_ subscription: Subscription) {
        let box = self.box
        let started = Task {
            do {
                for try await record in subscription {
                    box.state.withLock { state in
                        switch record {
                        case .message(let message): state.messages.append(message)
                        case .control(let control): state.controls.append(control)
                        }
                    }
                }
            } catch {
                box.state.withLock { $0.error = "\(error)" }
            }
        }
        task.withLock { $0 = started }
    }

    var messages: [DeliveredMessage] { box.state.withLock { $0.messages } }
    var controls: [ControlRecord] { box.state.withLock { $0.controls } }
    var error: String? { box.state.withLock { $0.error } }
    var payloads: [String] { messages.map { String(buffer: $0.payload) } }
    var views: Int { controls.filter { if case .view = $0 { return true } else { return false } }.count }

    func cancel() {
        task.withLock { $0?.cancel() }
    }

    deinit { cancel() }
}
