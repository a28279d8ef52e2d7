import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixCluster
import XCTest

final class ClusterTransportTests: XCTestCase {
    /// What one node's transport saw.
    final class Inbox: Sendable {
        private let state = NIOLockedValueBox<(messages: [String: [String]], connected: Set<String>)>(([:], []))
        func received(_ peer: Peer, _ body: ByteBuffer) {
            state.withLockedValue { $0.messages[peer.name, default: []].append(String(buffer: body)) }
        }
        func connected(_ peer: Peer) { _ = state.withLockedValue { $0.connected.insert(peer.name) } }
        func disconnected(_ peer: Peer) { _ = state.withLockedValue { $0.connected.remove(peer.name) } }
        var connected: Set<String> { state.withLockedValue { $0.connected } }
        func messages(from name: String) -> [String] { state.withLockedValue { $0.messages[name] ?? [] } }
    }

    struct Node {
        let transport: ClusterTransport
        let inbox: Inbox
        let port: Int
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    private func freePorts(_ count: Int) throws -> [Int] {
        try (0..<count).map { _ in
            let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
            defer { try? channel.close().wait() }
            return channel.localAddress!.port!
        }
    }

    private func start(
        _ name: String, incarnation: UInt64 = 1, port: Int, seeds: [String], settings: TransportSettings = TransportSettings()
    ) async throws -> Node {
        let inbox = Inbox()
        let transport = ClusterTransport(
            loop: group.next(), me: Hello(name: name, incarnation: incarnation, listenAddress: "127.0.0.1:\(port)"), settings: settings,
            callbacks: TransportCallbacks(received: inbox.received, connected: inbox.connected, disconnected: inbox.disconnected))
        let bound = try await transport.listen(host: "127.0.0.1", port: port).get()
        XCTAssertEqual(bound, port)
        try await transport.loop.submit { transport.connect(to: seeds) }.get()
        return Node(transport: transport, inbox: inbox, port: port)
    }

    private func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline { return XCTFail("timed out: \(what)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func testNodesWithACommonSeedListConnectPairwiseOnce() async throws {
        let ports = try freePorts(3)
        let seeds = ports.map { "127.0.0.1:\($0)" }
        var nodes: [Node] = []
        for (index, port) in ports.enumerated() { nodes.append(try await start("n\(index + 1)", port: port, seeds: seeds)) }
        try await eventually("full mesh") { nodes.allSatisfy { $0.inbox.connected.count == 2 } }
        XCTAssertEqual(nodes[0].inbox.connected, ["n2", "n3"])
        for node in nodes { try await node.transport.close().get() }
    }

    func testFramesArriveInOrderAndCoalesced() async throws {
        let ports = try freePorts(2)
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"])
        let b = try await start("b", port: ports[1], seeds: [])
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        try await a.transport.loop.submit {
            for index in 0..<1000 { XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "m\(index)"))) }
        }.get()
        try await eventually("all frames") { b.inbox.messages(from: "a").count == 1000 }
        XCTAssertEqual(b.inbox.messages(from: "a"), (0..<1000).map { "m\($0)" })
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testLargeFramesAreCompressedAndArriveIntact() async throws {
        let ports = try freePorts(2)
        var compressing = TransportSettings()
        compressing.compressFramesAtBytes = 1024
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: compressing)
        let b = try await start("b", port: ports[1], seeds: [])
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        let big = String(repeating: "sensors.paris.temp 21.5;", count: 400)
        try await a.transport.loop.submit {
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "small")))
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: big)))
        }.get()
        try await eventually("both frames") { b.inbox.messages(from: "a").count == 2 }
        XCTAssertEqual(b.inbox.messages(from: "a"), ["small", big])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testRestartedPeerIsRedialedAsNewIncarnation() async throws {
        let ports = try freePorts(2)
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"])
        var b = try await start("b", port: ports[1], seeds: [])
        try await eventually("connected") { a.inbox.connected == ["b"] }
        try await b.transport.close().get()
        try await eventually("a notices b is gone") { a.inbox.connected.isEmpty }
        b = try await start("b", incarnation: 2, port: ports[1], seeds: [])
        try await eventually("a redials b") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        let peers = try await a.transport.loop.submit { a.transport.connectedPeers }.get()
        XCTAssertEqual(peers.map(\.incarnation), [2])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testSendWithoutConnectionReportsACutLink() async throws {
        let ports = try freePorts(1)
        let a = try await start("a", port: ports[0], seeds: [])
        let sent = try await a.transport.loop.submit { a.transport.send(to: "nobody", ByteBuffer(string: "x")) }.get()
        XCTAssertFalse(sent)
        try await a.transport.close().get()
    }
}
