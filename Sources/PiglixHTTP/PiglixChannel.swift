import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS

/// One listener for HTTP/2 and HTTP/1.1: in the clear (h2c with prior
/// knowledge), or with `--tls-cert` over TLS, where ALPN picks the protocol.
///
/// Hummingbird's `.plaintextHTTP2()` speaks only h2c and `HTTP2UpgradeChannel`
/// picks by TLS ALPN; without TLS we pick by the first bytes instead: a
/// connection that starts with the HTTP/2 connection preface (RFC 9113 §3.4)
/// gets Hummingbird's HTTP/2 pipeline, anything else its HTTP/1.1 pipeline.
/// Both hand requests to the same responder, as `HTTP2UpgradeChannel` does;
/// HTTP/2 connections are set up by ``HTTP2Connection``.
public struct PiglixChannel: HTTPChannelHandler {
    public enum Negotiated: Sendable {
        case http1(HTTP1Channel.Value)
        case http2(HTTP2Connection.Streams)
    }

    public struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        public let channel: any Channel
    }

    private let http1: HTTP1Channel
    private let http2: HTTP2Connection
    /// From accept to a complete HTTP/1.1 request head, or to the HTTP/2
    /// preface: a connection that has not sent that much is closed.
    let requestHeadTimeout: TimeAmount
    let limiter: ConnectionLimiter
    /// TLS: the current certificate's context (reloaded on SIGHUP).
    let tls: TLSContextStore?

    public var responder: Responder { http1.responder }

    public init(
        responder: @escaping HTTPChannelHandler.Responder,
        requestHeadTimeout: TimeAmount = .seconds(10),
        idleTimeout: TimeAmount? = .seconds(300),
        http2StreamsMax: Int = 100,
        limiter: ConnectionLimiter = ConnectionLimiter(perAddressMax: 0),
        tls: TLSContextStore? = nil,
        fastPublish: FastPublish? = nil
    ) {
        // HTTP/1.1's idle timeout (Hummingbird's) counts only while no
        // request is open, so a subscription is never cut by it.
        var http1Configuration = HTTP1Channel.Configuration(idleTimeout: idleTimeout)
        http1Configuration.additionalChannelHandlers = { [CloseOnClientEOF(), RequestHeadWatcher()] }
        self.http1 = HTTP1Channel(responder: responder, configuration: http1Configuration)
        self.http2 = HTTP2Connection(http1: http1, streamsMax: http2StreamsMax, idleTimeout: idleTimeout, fastPublish: fastPublish)
        self.requestHeadTimeout = requestHeadTimeout
        self.limiter = limiter
        self.tls = tls
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let promise = channel.eventLoop.makePromise(of: Negotiated.self)
        guard limiter.admit(channel, logger: logger) else {
            // Closed at accept. Not a failed future: NIO would report that
            // to the listener, which stops accepting.
            promise.fail(ChannelError.inputClosed)
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededFuture(Value(negotiated: promise.futureResult, channel: channel))
        }
        let http1 = self.http1
        let http2 = self.http2
        let headTimeout = requestHeadTimeout
        let acceptedAt = NIODeadline.now()
        let configureHTTP1: (any Channel) -> EventLoopFuture<Negotiated> = { channel in
            do {
                try channel.pipeline.syncOperations.addHandler(RequestHeadTimeout(timeout: headTimeout, acceptedAt: acceptedAt))
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return http1.setup(channel: channel, logger: logger).map { .http1($0) }
        }
        let configureHTTP2: (any Channel) -> EventLoopFuture<Negotiated> = { channel in
            http2.setup(channel: channel, logger: logger).map { .http2($0) }
        }
        if let tls {
            return setupTLS(channel: channel, context: tls.current, promise: promise, configureHTTP1: configureHTTP1, configureHTTP2: configureHTTP2)
        }
        let sniffer = PrefaceSniffer(
            promise: promise, timeout: requestHeadTimeout, configureHTTP1: configureHTTP1, configureHTTP2: configureHTTP2)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(sniffer)
            return Value(negotiated: promise.futureResult, channel: channel)
        }
    }

    /// TLS, then ALPN: `h2` gets the HTTP/2 pipeline, `http/1.1` or no ALPN
    /// the HTTP/1.1 one. The handshake and the choice must be done within
    /// the request head timeout, like a cleartext preface.
    private func setupTLS(
        channel: any Channel, context: NIOSSLContext, promise: EventLoopPromise<Negotiated>,
        configureHTTP1: @escaping (any Channel) -> EventLoopFuture<Negotiated>,
        configureHTTP2: @escaping (any Channel) -> EventLoopFuture<Negotiated>
    ) -> EventLoopFuture<Value> {
        let decided = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
        let timer = channel.eventLoop.scheduleTask(in: requestHeadTimeout) {
            guard !decided.value else { return }
            decided.value = true
            promise.fail(ChannelError.inputClosed)
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { _ in
            timer.cancel()
            guard !decided.value else { return }
            decided.value = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
        let negotiation = ApplicationProtocolNegotiationHandler { result, channel in
            timer.cancel()
            let configured: EventLoopFuture<Negotiated>
            switch result {
            case .negotiated("h2"): configured = configureHTTP2(channel)
            default: configured = configureHTTP1(channel)
            }
            configured.whenComplete { outcome in
                guard !decided.value else { return }
                decided.value = true
                promise.completeWith(outcome)
            }
            return configured.map { _ in }
        }
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
            try channel.pipeline.syncOperations.addHandler(negotiation)
            return Value(negotiated: promise.futureResult, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1(let http1Value):
                await http1.handle(value: http1Value, logger: logger)
            case .http2(let streams):
                await http2.handle(streams, logger: logger)
            }
        } catch {
            logger.debug("connection closed before its protocol was known: \(error)")
        }
    }
}

/// Reads the first bytes of a connection, compares them with the HTTP/2
/// preface, sets up the matching pipeline behind itself, replays the bytes
/// into it and leaves the pipeline.
final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let promise: EventLoopPromise<PiglixChannel.Negotiated>
    private let timeout: TimeAmount
    private let configureHTTP1: (any Channel) -> EventLoopFuture<PiglixChannel.Negotiated>
    private let configureHTTP2: (any Channel) -> EventLoopFuture<PiglixChannel.Negotiated>
    private var buffered: ByteBuffer?
    private var decided = false
    private var timer: Scheduled<Void>?

    init(
        promise: EventLoopPromise<PiglixChannel.Negotiated>,
        timeout: TimeAmount,
        configureHTTP1: @escaping (any Channel) -> EventLoopFuture<PiglixChannel.Negotiated>,
        configureHTTP2: @escaping (any Channel) -> EventLoopFuture<PiglixChannel.Negotiated>
    ) {
        self.promise = promise
        self.timeout = timeout
        self.configureHTTP1 = configureHTTP1
        self.configureHTTP2 = configureHTTP2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let promise = self.promise
        timer = context.eventLoop.scheduleTask(in: timeout) {
            promise.fail(ChannelError.inputClosed)
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        if !decided {
            decided = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !decided {
            decided = true
            timer?.cancel()
            promise.fail(ChannelError.inputClosed)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if buffered == nil {
            buffered = bytes
        } else {
            buffered!.writeBuffer(&bytes)
        }
        let seen = buffered!.readableBytesView
        let compared = min(seen.count, Self.preface.count)
        let matchesSoFar = seen.prefix(compared).elementsEqual(Self.preface.prefix(compared))
        if matchesSoFar && compared < Self.preface.count { return }
        decide(context: context, http2: matchesSoFar)
    }

    private func decide(context: ChannelHandlerContext, http2: Bool) {
        decided = true
        timer?.cancel()
        let configure = http2 ? configureHTTP2 : configureHTTP1
        let promise = self.promise
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        configure(context.channel).whenComplete { result in
            let context = loopBoundContext.value
            let handler = loopBoundSelf.value
            switch result {
            case .success(let negotiated):
                promise.succeed(negotiated)
                if let bytes = handler.buffered {
                    handler.buffered = nil
                    context.fireChannelRead(handler.wrapInboundOut(bytes))
                    context.fireChannelReadComplete()
                }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case .failure(let error):
                promise.fail(error)
                context.close(promise: nil)
            }
        }
    }
}

@available(*, unavailable)
extension PrefaceSniffer: Sendable {}

/// HTTP/1.1 only: a client that closes its side has gone (HTTP/1.1 clients do
/// not half-close), so close the connection and let a parked subscribe
/// stream end now rather than at its next heartbeat.
final class CloseOnClientEOF: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension CloseOnClientEOF: Sendable {}
