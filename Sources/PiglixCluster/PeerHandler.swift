import CompressNIO
import NIOCore

/// One peer connection: says hello, waits for the peer's, with a cluster
/// key exchanges proofs (ClusterKey.swift), then hands every frame to the
/// transport. A peer is registered, and its frames reach the protocol, only
/// once the handshake is complete, so an unkeyed process cannot join or
/// speak for a node.
final class PeerHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    /// The handshake as a state machine; each state holds what only it needs.
    private enum LinkState {
        case awaitingHello
        /// Keyed: the peer's hello arrived and this node's proof is sent.
        case awaitingProof(peer: Hello, peerHello: ByteBuffer)
        case open(Peer, opener: LinkCipher?)
        case closed
    }

    private let transport: ClusterTransport
    private let dialedByMe: Bool
    private let address: String?
    private let helloTimeout: TimeAmount
    private let key: ClusterKey?
    private let hello: Hello
    private let helloBytes: ByteBuffer
    private var state = LinkState.awaitingHello
    /// Fragments of a `messages` body gathered so far (PeerFrameKind.fragment).
    private var fragments: ByteBuffer?
    private var timeout: Scheduled<Void>?

    init(transport: ClusterTransport, dialedByMe: Bool, address: String?, helloTimeout: TimeAmount, key: ClusterKey?) {
        self.transport = transport
        self.dialedByMe = dialedByMe
        self.address = address
        self.helloTimeout = helloTimeout
        self.key = key
        var hello = transport.me.forConnection()
        hello.keyed = key != nil
        self.hello = hello
        self.helloBytes = hello.encode()
    }

    private var role: ClusterKey.Role { dialedByMe ? .dialer : .acceptor }
    private var peerName: String { address.map { "\($0)" } ?? "a peer that dialed in" }

    func channelActive(context: ChannelHandlerContext) {
        var frame = context.channel.allocator.buffer(capacity: helloBytes.readableBytes + 5)
        frame.writePeerFrame(.hello, body: helloBytes)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        let channel = context.channel
        let transport = self.transport
        let name = peerName
        timeout = context.eventLoop.scheduleTask(in: helloTimeout) {
            transport.refused("\(name) did not complete the handshake in time")
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .open(let peer, var opener):
            var kind = frame.kind
            var body = frame.body
            if var cipher = opener {
                guard kind == .sealed, let (inner, plain) = try? cipher.open(body) else {
                    return refuse(context, "\(peer) sent a frame that failed authentication; closing the link")
                }
                opener = cipher
                state = .open(peer, opener: opener)
                kind = inner
                body = plain
            }
            switch kind {
            case .fragment:
                guard (fragments?.readableBytes ?? 0) + body.readableBytes < transport.settings.messageBytesMax else {
                    return refuse(context, "\(peer) sent fragments over the message limit of \(transport.settings.messageBytesMax) bytes")
                }
                if fragments == nil { fragments = context.channel.allocator.buffer(capacity: body.readableBytes * 2) }
                fragments!.writeBuffer(&body)
            case .messages:
                if var gathered = fragments {
                    fragments = nil
                    guard gathered.readableBytes + body.readableBytes <= transport.settings.messageBytesMax else {
                        return refuse(context, "\(peer) sent fragments over the message limit of \(transport.settings.messageBytesMax) bytes")
                    }
                    gathered.writeBuffer(&body)
                    transport.received(gathered, from: peer)
                } else {
                    transport.received(body, from: peer)
                }
            case .compressedMessages:
                guard fragments == nil else { return refuse(context, "\(peer) sent a compressed frame to end fragments") }
                // Bounded like an uncompressed frame: a bomb closes the link.
                guard let plain = try? body.decompress(with: .zlib(), maxSize: transport.settings.frameBytesMax) else {
                    return refuse(context, "\(peer) sent a compressed frame that does not decompress within the frame limit")
                }
                transport.received(plain, from: peer)
            case .hello, .proof, .sealed:
                refuse(context, "\(peer) sent a \(kind) frame on an open link")
            }
        case .awaitingHello:
            guard frame.kind == .hello else { return refuse(context, "\(peerName) sent \(frame.kind) before its hello") }
            let peerHello: Hello
            do { peerHello = try Hello.decode(frame.body) } catch { return refuse(context, "\(peerName): \(error)") }
            if transport.isOwn(peerHello, address: address) { return close(context) }
            let who = "node \(peerHello.name) (\(peerHello.listenAddress))"
            switch (key, peerHello.keyed) {
            case (nil, true):
                return refuse(context, "\(who) requires a cluster key and this node has none (--cluster-key-file)")
            case (.some, false):
                return refuse(context, "\(who) has no cluster key; this node requires one (--cluster-key-file)")
            case (nil, false):
                establish(context, peerHello, sealer: nil, opener: nil)
            case (.some(let key), true):
                let proof = key.prove(transcript(peerHello: frame.body, prover: role))
                var out = context.channel.allocator.buffer(capacity: proof.count + 5)
                var body = context.channel.allocator.buffer(capacity: proof.count)
                body.writeBytes(proof)
                out.writePeerFrame(.proof, body: body)
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
                state = .awaitingProof(peer: peerHello, peerHello: frame.body)
            }
        case .awaitingProof(let peerHello, let peerHelloBytes):
            guard frame.kind == .proof, let key else {
                return refuse(context, "node \(peerHello.name) sent \(frame.kind) instead of its key proof")
            }
            guard let peerKey = key.verify(frame.body, transcript: transcript(peerHello: peerHelloBytes, prover: role.other)) else {
                return refuse(
                    context, "node \(peerHello.name) (\(peerHello.listenAddress)) does not hold this cluster's key; connection refused")
            }
            let (dialerNonce, acceptorNonce) = dialedByMe ? (hello.nonce, peerHello.nonce) : (peerHello.nonce, hello.nonce)
            let sealer = LinkCipher(key: ClusterKey.linkKey(key.keys[0], dialerNonce: dialerNonce, acceptorNonce: acceptorNonce, sender: role))
            let opener = LinkCipher(
                key: ClusterKey.linkKey(peerKey, dialerNonce: dialerNonce, acceptorNonce: acceptorNonce, sender: role.other))
            establish(context, peerHello, sealer: sealer, opener: opener)
        case .closed:
            return
        }
    }

    private func transcript(peerHello: ByteBuffer, prover: ClusterKey.Role) -> [UInt8] {
        dialedByMe
            ? ClusterKey.transcript(dialerHello: helloBytes, acceptorHello: peerHello, prover: prover)
            : ClusterKey.transcript(dialerHello: peerHello, acceptorHello: helloBytes, prover: prover)
    }

    private func establish(_ context: ChannelHandlerContext, _ peerHello: Hello, sealer: LinkCipher?, opener: LinkCipher?) {
        timeout?.cancel()
        guard transport.register(context.channel, hello: peerHello, dialedByMe: dialedByMe, address: address, sealer: sealer) else {
            return close(context)
        }
        state = .open(Peer(name: peerHello.name, incarnation: peerHello.incarnation, listenAddress: peerHello.listenAddress), opener: opener)
    }

    private func refuse(_ context: ChannelHandlerContext, _ why: String) {
        transport.refused(why)
        close(context)
    }

    private func close(_ context: ChannelHandlerContext) {
        state = .closed
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        var peer: Peer?
        if case .open(let open, _) = state { peer = open }
        state = .closed
        transport.closed(context.channel, peer: peer, dialedAddress: dialedByMe ? address : nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .awaitingHello = state { transport.refused("\(peerName): \(error)") }
        close(context)
    }
}

@available(*, unavailable)
extension PeerHandler: Sendable {}
