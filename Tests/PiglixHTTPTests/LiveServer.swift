import Foundation
import Logging
import NIOCore
import PiglixHTTP
import PiglixTestKit
import ServiceLifecycle
import XCTest

/// A real node on an ephemeral loopback port, in this process.
final class LiveServer: NodeUnderTest, Sendable {
    let server: PiglixServer
    let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    enum StartError: Error {
        case didNotStart(String)
    }

    /// Starts a node with `configure`d settings; a node that does not start
    /// fails the test.
    static func start(
        file: StaticString = #filePath, line: UInt = #line, _ configure: (inout ServerSettings) -> Void = { _ in }
    ) async throws -> LiveServer {
        var settings = ServerSettings()
        settings.port = 0
        configure(&settings)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try PiglixServer(settings: settings, logger: logger)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let group = server.makeServiceGroup(gracefulShutdownSignals: []) { port in continuation.yield(port) }
        // A group that ends before it listens (a bind error) ends the stream too.
        let task = Task {
            defer { continuation.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            let reason: String
            switch await task.result {
            case .success: reason = "the service group ended before it listened"
            case .failure(let error): reason = "\(error)"
            }
            XCTFail("server did not start: \(reason)", file: file, line: line)
            throw StartError.didNotStart(reason)
        }
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
