import CompressNIO
import NIOCore
import NIOPosix

/// A peer as its hello names it.
public struct Peer: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var incarnation: UInt64
    public var listenAddress: String
    public var description: String { "\(name)#\(incarnation)@\(listenAddress)" }
}

/// Bounds and timings of the peer transport.
public struct TransportSettings: Sendable {
    /// Largest frame accepted from a peer.
    public var frameBytesMax = 64 << 20
    /// A `messages` body longer than this is sent as fragments of this size
    /// (ClusterSettings.validate keeps it under `frameBytesMax`).
    public var fragmentBytes = 4 << 20
    /// Largest `messages` body gathered from fragments.
    public var messageBytesMax = 1 << 30
    /// Redial backoff: doubles from min to max, with jitter.
    public var reconnectBackoffMin = TimeAmount.milliseconds(50)
    public var reconnectBackoffMax = TimeAmount.seconds(2)
    public var connectTimeout = TimeAmount.seconds(1)
    /// A connection that has not said hello within this is closed.
    public var helloTimeout = TimeAmount.seconds(5)
    /// zlib-compress frame bodies of at least this many bytes (nil: never).
    /// A receiver always accepts compressed frames, so nodes may differ.
    public var compressFramesAtBytes: Int?
    /// The shared cluster key; nil: peers are admitted without proof.
    public var clusterKey: ClusterKey?
    public init() {}
}

/// What the transport tells its owner, always on the transport's event loop.
public struct TransportCallbacks: Sendable {
    public var received: @Sendable (Peer, ByteBuffer) -> Void
    public var connected: @Sendable (Peer) -> Void
    public var disconnected: @Sendable (Peer) -> Void
    /// A connection was refused before it could carry protocol messages
    /// (no key, another key, a bad proof or frame): why, naming the peer.
    public var refused: @Sendable (String) -> Void
    public init(
        received: @escaping @Sendable (Peer, ByteBuffer) -> Void,
        connected: @escaping @Sendable (Peer) -> Void = { _ in },
        disconnected: @escaping @Sendable (Peer) -> Void = { _ in },
        refused: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.received = received
        self.connected = connected
        self.disconnected = disconnected
        self.refused = refused
    }
}

/// TCP between nodes: one connection per pair of nodes (when both dial at
/// once, the one dialed by the smaller name is kept), a hello handshake,
/// redial with backoff, and writes coalesced: every frame sent during one
/// event-loop turn goes out in one flush (one `writev`), which is how
/// protocol messages piggyback on each other. It carries bytes only; the
/// protocol lives in `PiglixGroups` and its encoding in `MessageCodec`.
///
/// Confined to one event loop: every method must be called on `loop`, and
/// every callback runs there, so the protocol core driven from the
/// callbacks needs no lock.
public final class ClusterTransport: Sendable {
    public let loop: any EventLoop
    public let me: Hello
    let settings: TransportSettings
    let callbacks: TransportCallbacks
    private let state: NIOLoopBoundBox<State>

    struct Connection {
        var channel: any Channel
        var peer: Peer
        var dialedByMe: Bool
        /// Seals what this node sends on the link (with a cluster key).
        var sealer: LinkCipher?
    }

    struct Dial {
        var attempt = 0
        var inFlight = false
        var scheduled: Scheduled<Void>?
    }

    struct State {
        var listener: (any Channel)?
        var connections: [String: Connection] = [:]
        /// Addresses to stay connected to: seeds and every peer heard of.
        var wanted: Set<String> = []
        var dials: [String: Dial] = [:]
        /// Addresses that turned out to be this node.
        var own: Set<String> = []
        var flushScheduled = false
        var dirty: [any Channel] = []
        var closed = false
    }

    public init(loop: any EventLoop, me: Hello, settings: TransportSettings = TransportSettings(), callbacks: TransportCallbacks) {
        self.loop = loop
        self.me = me
        self.settings = settings
        self.callbacks = callbacks
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), as: State.self, eventLoop: loop)
    }

    // MARK: Lifecycle

    /// Listens for peers; returns the bound port (useful with port 0).
    public func listen(host: String, port: Int) -> EventLoopFuture<Int> {
        let frameBytesMax = settings.frameBytesMax
        let helloTimeout = settings.helloTimeout
        let key = settings.clusterKey
        return ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: frameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(
                        PeerHandler(transport: self, dialedByMe: false, address: nil, helloTimeout: helloTimeout, key: key))
                }
            }
            .bind(host: host, port: port)
            .map { channel in
                self.state.value.listener = channel
                return channel.localAddress?.port ?? port
            }
    }

    /// Keep a connection to each address (seeds; `host:port`).
    public func connect(to addresses: [String]) {
        loop.preconditionInEventLoop()
        for address in addresses where !state.value.own.contains(address) {
            if state.value.wanted.insert(address).inserted { dial(address) }
        }
    }

    public func close() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.state.value.closed = true
            for (_, dial) in self.state.value.dials { dial.scheduled?.cancel() }
            var futures: [EventLoopFuture<Void>] = []
            if let listener = self.state.value.listener { futures.append(listener.close()) }
            for (_, connection) in self.state.value.connections { futures.append(connection.channel.close()) }
            return EventLoopFuture.andAllComplete(futures, on: self.loop)
        }
    }

    // MARK: Sending

    /// Queues `body` as one frame to `peer`; sent at the end of this loop
    /// turn together with everything else queued to that peer. Returns false
    /// when there is no connection (the link is cut; the protocol recovers).
    @discardableResult
    public func send(to peer: String, _ body: ByteBuffer) -> Bool {
        loop.preconditionInEventLoop()
        guard state.value.connections[peer] != nil else { return false }
        var body = body
        if body.readableBytes > settings.fragmentBytes {
            // Never one frame the peer would refuse: fragments, then the
            // end as an ordinary frame (not compressed: a large body
            // compressed on the loop would hold it).
            while body.readableBytes > settings.fragmentBytes {
                guard writeFrame(.fragment, body.readSlice(length: settings.fragmentBytes)!, to: peer) else { return false }
            }
            return writeFrame(.messages, body, to: peer)
        }
        var kind = PeerFrameKind.messages
        if let threshold = settings.compressFramesAtBytes, body.readableBytes >= threshold {
            // One self-contained zlib stream per frame; kept only if it saves bytes.
            var input = body
            if let compressed = try? input.compress(with: .zlib()), compressed.readableBytes < body.readableBytes {
                body = compressed
                kind = .compressedMessages
            }
        }
        return writeFrame(kind, body, to: peer)
    }

    private func writeFrame(_ kind: PeerFrameKind, _ body: ByteBuffer, to peer: String) -> Bool {
        guard let connection = state.value.connections[peer] else { return false }
        var kind = kind
        var body = body
        if state.value.connections[peer]?.sealer != nil {
            // Sealed in send order, which is the order the peer opens them in.
            guard let sealed = try? state.value.connections[peer]!.sealer!.seal(kind: kind, body: body, allocator: connection.channel.allocator)
            else {
                connection.channel.close(promise: nil)
                return false
            }
            body = sealed
            kind = .sealed
        }
        var frame = connection.channel.allocator.buffer(capacity: body.readableBytes + 5)
        frame.writePeerFrame(kind, body: body)
        connection.channel.write(frame, promise: nil)
        state.value.dirty.append(connection.channel)
        scheduleFlush()
        return true
    }

    /// Closes the link to `peer` (it is redialed as after any drop): what
    /// it sent could not come from a correct member.
    public func disconnect(_ peer: String) {
        loop.preconditionInEventLoop()
        state.value.connections[peer]?.channel.close(promise: nil)
    }

    /// Whether the socket to `peer` takes more without queueing in memory:
    /// the signal the protocol's flow control reads.
    public func isWritable(_ peer: String) -> Bool {
        state.value.connections[peer]?.channel.isWritable ?? false
    }

    public var connectedPeers: [Peer] { state.value.connections.values.map(\.peer) }

    private func scheduleFlush() {
        guard !state.value.flushScheduled else { return }
        state.value.flushScheduled = true
        loop.execute {
            self.state.value.flushScheduled = false
            let dirty = self.state.value.dirty
            self.state.value.dirty.removeAll(keepingCapacity: true)
            var flushed = Set<ObjectIdentifier>()
            for channel in dirty where flushed.insert(ObjectIdentifier(channel)).inserted { channel.flush() }
        }
    }

    // MARK: Dialing

    private func dial(_ address: String) {
        guard !state.value.closed, state.value.wanted.contains(address), !state.value.own.contains(address),
            !isConnected(toAddress: address), !(state.value.dials[address]?.inFlight ?? false)
        else { return }
        guard let (host, port) = Self.split(address) else { return }
        state.value.dials[address, default: Dial()].inFlight = true
        let frameBytesMax = settings.frameBytesMax
        let helloTimeout = settings.helloTimeout
        let key = settings.clusterKey
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: frameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(
                        PeerHandler(transport: self, dialedByMe: true, address: address, helloTimeout: helloTimeout, key: key))
                }
            }
        // An IP literal is dialed as an address: the name resolver is not
        // needed (and a minimal container image may not support it).
        let connecting: EventLoopFuture<any Channel>
        if let literal = try? SocketAddress(ipAddress: host, port: port) {
            connecting = bootstrap.connect(to: literal)
        } else {
            connecting = bootstrap.connect(host: host, port: port)
        }
        connecting
            .whenComplete { result in
                self.state.value.dials[address]?.inFlight = false
                if case .failure = result { self.redial(address) }
            }
    }

    private func redial(_ address: String) {
        guard !state.value.closed, state.value.wanted.contains(address), !state.value.own.contains(address) else { return }
        var dial = state.value.dials[address] ?? Dial()
        dial.attempt += 1
        let base = settings.reconnectBackoffMin.nanoseconds << min(dial.attempt - 1, 16)
        let capped = min(base, settings.reconnectBackoffMax.nanoseconds)
        let delay = TimeAmount.nanoseconds(capped / 2 + Int64.random(in: 0...max(capped / 2, 1)))
        dial.scheduled?.cancel()
        dial.scheduled = loop.scheduleTask(in: delay) { self.dial(address) }
        state.value.dials[address] = dial
    }

    private func isConnected(toAddress address: String) -> Bool {
        state.value.connections.values.contains { $0.peer.listenAddress == address }
    }

    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    // MARK: Connections (called by PeerHandler, on the loop)

    /// Whether `hello` is this node's own (a seed list usually names this
    /// node too): the address is remembered as its own, not dialed again.
    func isOwn(_ hello: Hello, address: String?) -> Bool {
        guard hello.name == me.name else { return false }
        if let address {
            state.value.own.insert(address)
            state.value.wanted.remove(address)
        }
        return true
    }

    /// A peer said hello (and, with a cluster key, proved it holds one) on
    /// `channel`. Returns false when the channel must close.
    func register(_ channel: any Channel, hello: Hello, dialedByMe: Bool, address: String?, sealer: LinkCipher?) -> Bool {
        if isOwn(hello, address: address) { return false }
        let peer = Peer(name: hello.name, incarnation: hello.incarnation, listenAddress: hello.listenAddress)
        var announce = true
        if let existing = state.value.connections[peer.name] {
            let keepNew: Bool
            if existing.peer.incarnation != peer.incarnation {
                // A restarted peer: its old connection is dead.
                keepNew = peer.incarnation > existing.peer.incarnation
            } else {
                // Both dialed at once: keep the connection dialed by the
                // smaller name, so both ends keep the same one.
                keepNew = (dialedByMe ? me.name : peer.name) == min(me.name, peer.name)
                announce = false
            }
            guard keepNew else { return false }
            state.value.connections[peer.name] = nil
            existing.channel.close(promise: nil)
            if announce { callbacks.disconnected(existing.peer) }
        }
        state.value.connections[peer.name] = Connection(channel: channel, peer: peer, dialedByMe: dialedByMe, sealer: sealer)
        state.value.dials[peer.listenAddress]?.attempt = 0
        state.value.wanted.insert(peer.listenAddress)
        if announce { callbacks.connected(peer) }
        return true
    }

    func received(_ body: ByteBuffer, from peer: Peer) {
        callbacks.received(peer, body)
    }

    func refused(_ why: String) {
        callbacks.refused(why)
    }

    func closed(_ channel: any Channel, peer: Peer?, dialedAddress: String?) {
        if let peer, let current = state.value.connections[peer.name], current.channel === channel {
            state.value.connections[peer.name] = nil
            callbacks.disconnected(peer)
            redial(peer.listenAddress)
        } else if let dialedAddress, !state.value.own.contains(dialedAddress) {
            redial(dialedAddress)
        }
    }
}

