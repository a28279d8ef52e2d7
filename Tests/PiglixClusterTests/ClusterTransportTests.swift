import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixCluster
import XCTest

final class ClusterTransportTests: XCTestCase {
    /// What one node's transport saw.
    final class Inbox: Sendable {
        private let state = NIOLockedValueBox<(messages: [String: [String]], connected: Set<String>, refused: [String], drops: Int)>(
            ([:], [], [], 0))
        func received(_ peer: Peer, _ body: ByteBuffer) {
            state.withLockedValue { $0.messages[peer.name, default: []].append(String(buffer: body)) }
        }
        func connected(_ peer: Peer) { _ = state.withLockedValue { $0.connected.insert(peer.name) } }
        func disconnected(_ peer: Peer) {
            state.withLockedValue {
                $0.connected.remove(peer.name)
                $0.drops += 1
            }
        }
        /// Links seen going down so far.
        var drops: Int { state.withLockedValue { $0.drops } }
        func refused(_ why: String) { state.withLockedValue { $0.refused.append(why) } }
        var connected: Set<String> { state.withLockedValue { $0.connected } }
        var refusals: [String] { state.withLockedValue { $0.refused } }
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
            callbacks: TransportCallbacks(
                received: inbox.received, connected: inbox.connected, disconnected: inbox.disconnected, refused: inbox.refused))
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

    /// A body larger than a frame may be (a flush report holding many
    /// messages) goes as fragments, sealed like any frame, and arrives whole
    /// and in order with the frames around it.
    func testBodyOverTheFrameLimitTravelsAsFragmentsAndArrivesWhole() async throws {
        let ports = try freePorts(2)
        var settings = try keyed("correct horse battery staple 1\n")
        settings.frameBytesMax = 64 << 10
        settings.fragmentBytes = 16 << 10
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: settings)
        let b = try await start("b", port: ports[1], seeds: [], settings: settings)
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        let big = String((0..<300_000).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
        try await a.transport.loop.submit {
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "before")))
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: big)))
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "after")))
        }.get()
        try await eventually("three bodies") { b.inbox.messages(from: "a").count == 3 }
        let got = b.inbox.messages(from: "a")
        XCTAssertEqual(got.map(\.count), [6, big.count, 5])
        XCTAssertTrue(got == ["before", big, "after"], "the bodies arrive whole and in order")
        XCTAssertEqual(a.inbox.refusals + b.inbox.refusals, [])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    /// Fragments are gathered only up to the receiver's message limit: past
    /// it the link is closed, and nothing half-gathered reaches the protocol.
    func testFragmentsOverTheMessageLimitCloseTheLink() async throws {
        let ports = try freePorts(2)
        var sender = TransportSettings()
        sender.fragmentBytes = 16 << 10
        var receiver = TransportSettings()
        receiver.messageBytesMax = 100 << 10
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: sender)
        let b = try await start("b", port: ports[1], seeds: [], settings: receiver)
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        try await a.transport.loop.submit {
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: String(repeating: "y", count: 200 << 10))))
        }.get()
        try await eventually("the refusal") { b.inbox.refusals.contains { $0.contains("over the message limit of 102400 bytes") } }
        XCTAssertEqual(b.inbox.messages(from: "a"), [])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    /// One start-up check keeps the size limits consistent: the defaults
    /// pass; a frame limit under a fragment, or a message limit under a
    /// flush report of full unstable windows, is refused naming both.
    func testSizeLimitsAreCheckedAgainstEachOtherAtStartUp() throws {
        var settings = ClusterSettings(nodeName: "n1", listenHost: "127.0.0.1", listenPort: 7001, seeds: [])
        XCTAssertNoThrow(try settings.validateSizes(applicationMessageBytesMax: 1 << 20))
        XCTAssertNoThrow(try settings.validateSizes(applicationMessageBytesMax: 64 << 20))
        settings.frameBytesMax = settings.fragmentBytes
        XCTAssertThrowsError(try settings.validateSizes(applicationMessageBytesMax: 1 << 20)) { error in
            XCTAssertTrue("\(error)".contains("frame bytes max"), "\(error)")
        }
        settings.frameBytesMax = 64 << 20
        settings.protocolMessageBytesMax = 256 << 20
        XCTAssertThrowsError(try settings.validateSizes(applicationMessageBytesMax: 1 << 20)) { error in
            XCTAssertTrue("\(error)".contains("unstable windows"), "\(error)")
        }
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

    /// A peer whose message was rejected is cut off (`disconnect`); the
    /// link comes back with a new handshake, and frames flow again.
    func testDisconnectedPeerIsRedialedWithAFreshLink() async throws {
        let ports = try freePorts(2)
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"])
        let b = try await start("b", port: ports[1], seeds: [])
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        try await b.transport.loop.submit { b.transport.disconnect("a") }.get()
        try await eventually("the link dropped on both sides") { a.inbox.drops >= 1 && b.inbox.drops >= 1 }
        try await eventually("redialed") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        try await eventually("a frame over the new link") {
            (try? a.transport.loop.submit { a.transport.send(to: "b", ByteBuffer(string: "again")) }.wait()) == true
                && b.inbox.messages(from: "a").contains("again")
        }
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

    // MARK: Cluster key

    private func keyed(_ text: String) throws -> TransportSettings {
        var settings = TransportSettings()
        settings.clusterKey = try ClusterKey(fileContents: text)
        return settings
    }

    func testNodesWithTheSameKeyConnectAndExchangeSealedFrames() async throws {
        let ports = try freePorts(2)
        let settings = try keyed("correct horse battery staple 1\n")
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: settings)
        let b = try await start("b", port: ports[1], seeds: [], settings: settings)
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        let big = String(repeating: "x", count: 100_000)
        try await a.transport.loop.submit {
            for index in 0..<100 { XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "m\(index)"))) }
            XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: big)))
        }.get()
        try await b.transport.loop.submit { XCTAssertTrue(b.transport.send(to: "a", ByteBuffer(string: "back"))) }.get()
        try await eventually("all frames") { b.inbox.messages(from: "a").count == 101 && a.inbox.messages(from: "b") == ["back"] }
        XCTAssertEqual(b.inbox.messages(from: "a"), (0..<100).map { "m\($0)" } + [big])
        XCTAssertEqual(a.inbox.refusals + b.inbox.refusals, [])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testNodeWithAnotherKeyIsRefusedOnBothSides() async throws {
        let ports = try freePorts(2)
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: try keyed("the key of cluster one"))
        let b = try await start("b", port: ports[1], seeds: [], settings: try keyed("the key of cluster two"))
        try await eventually("both refuse") { !a.inbox.refusals.isEmpty && !b.inbox.refusals.isEmpty }
        XCTAssertTrue(a.inbox.refusals[0].contains("does not hold this cluster's key"), a.inbox.refusals[0])
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(a.inbox.connected, [])
        XCTAssertEqual(b.inbox.connected, [])
        XCTAssertEqual(b.inbox.messages(from: "a"), [])
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testKeyedNodeRefusesAnUnkeyedOneAndTheUnkeyedSaysWhy() async throws {
        let ports = try freePorts(2)
        let open = try await start("open", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"])
        let keyedNode = try await start("keyed", port: ports[1], seeds: [], settings: try keyed("a sixteen byte key!"))
        try await eventually("both refuse") { !open.inbox.refusals.isEmpty && !keyedNode.inbox.refusals.isEmpty }
        XCTAssertTrue(keyedNode.inbox.refusals[0].contains("has no cluster key"), keyedNode.inbox.refusals[0])
        XCTAssertTrue(open.inbox.refusals[0].contains("requires a cluster key"), open.inbox.refusals[0])
        XCTAssertEqual(keyedNode.inbox.connected, [])
        try await open.transport.close().get()
        try await keyedNode.transport.close().get()
    }

    func testRotationAcceptsTheOldKeyWhileNodesProveWithTheNew() async throws {
        let ports = try freePorts(2)
        // a was rotated (new key first), b not yet (old key first, new second).
        let a = try await start("a", port: ports[0], seeds: ["127.0.0.1:\(ports[1])"], settings: try keyed("new key 0123456789\nold key 0123456789\n"))
        let b = try await start("b", port: ports[1], seeds: [], settings: try keyed("# rotation in progress\nold key 0123456789\nnew key 0123456789"))
        try await eventually("connected") { a.inbox.connected == ["b"] && b.inbox.connected == ["a"] }
        try await a.transport.loop.submit { XCTAssertTrue(a.transport.send(to: "b", ByteBuffer(string: "hi"))) }.get()
        try await b.transport.loop.submit { XCTAssertTrue(b.transport.send(to: "a", ByteBuffer(string: "ho"))) }.get()
        try await eventually("frames both ways") { b.inbox.messages(from: "a") == ["hi"] && a.inbox.messages(from: "b") == ["ho"] }
        try await a.transport.close().get()
        try await b.transport.close().get()
    }

    func testRawClientWithoutProofNeverReachesTheProtocol() async throws {
        let ports = try freePorts(1)
        let node = try await start("n", port: ports[0], seeds: [], settings: try keyed("a sixteen byte key!"))
        // A client that speaks the framing but skips the proof: its hello,
        // then a messages frame straight away.
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: ports[0]).get()
        var hello = Hello(name: "intruder", incarnation: 1, listenAddress: "127.0.0.1:1", keyed: true, nonce: Array(repeating: 7, count: 32))
        hello.keyed = true
        var frames = ByteBuffer()
        for (kind, body) in [(UInt8(1), helloBytes(hello)), (UInt8(2), ByteBuffer(string: "forged"))] {
            frames.writeInteger(UInt32(body.readableBytes + 1))
            frames.writeInteger(kind)
            var body = body
            frames.writeBuffer(&body)
        }
        try await channel.writeAndFlush(frames).get()
        try await eventually("refused") { !node.inbox.refusals.isEmpty }
        XCTAssertEqual(node.inbox.messages(from: "intruder"), [])
        XCTAssertEqual(node.inbox.connected, [])
        try? await channel.close().get()
        try await node.transport.close().get()
    }

    func testKeyFileErrorsAreClear() {
        XCTAssertThrowsError(try ClusterKey(fileContents: "\n# only a comment\n")) {
            XCTAssertEqual($0 as? ClusterKey.Invalid, .empty)
        }
        XCTAssertThrowsError(try ClusterKey(fileContents: "short\n")) {
            XCTAssertEqual($0 as? ClusterKey.Invalid, .tooShort(line: 1, bytes: 5))
        }
        XCTAssertThrowsError(try ClusterKey(fileContents: (1...5).map { "key number \($0) is long" }.joined(separator: "\n"))) {
            XCTAssertEqual($0 as? ClusterKey.Invalid, .tooMany(5))
        }
    }

    /// A hello as the wire carries it (version 2), written independently of the transport's encoder.
    private func helloBytes(_ hello: Hello) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt16(2))
        b.writeInteger(UInt16(hello.name.utf8.count))
        b.writeString(hello.name)
        b.writeInteger(hello.incarnation)
        b.writeInteger(UInt16(hello.listenAddress.utf8.count))
        b.writeString(hello.listenAddress)
        b.writeInteger(UInt8(hello.keyed ? 1 : 0))
        b.writeInteger(UInt8(hello.nonce.count))
        b.writeBytes(hello.nonce)
        return b
    }
}
