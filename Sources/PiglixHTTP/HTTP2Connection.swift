import HummingbirdCore
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2

/// One HTTP/2 connection: our own pipeline instead of Hummingbird's
/// `HTTP2Channel`, whose NIOHTTP2Handler configuration cannot be changed.
///
/// NIO treats a HEADERS frame over the advertised SETTINGS_MAX_CONCURRENT_STREAMS
/// as a connection error, so a client that opens one stream too many (an
/// eager client before our SETTINGS arrive, or a careless one) lost every
/// stream on the connection, subscriptions included. RFC 9113 §5.1.2 allows
/// a stream error instead, as nginx and Go do: NIO is configured with a
/// higher hard limit, the client is told `streamsMax` (see
/// ``AdvertisedStreamsLimit``), and a stream past `streamsMax` is reset with
/// REFUSED_STREAM, which clients may retry; the others go on.
public struct HTTP2Connection: Sendable {
    public typealias RoutedStream = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// The streams of one connection that go to the router: at once, or
    /// once ``FastPublishHandler`` read a head it does not answer itself.
    /// (NIO's async multiplexer would cost a yield and a task wake-up per
    /// stream, for streams the event loop answers.)
    public struct Streams: Sendable {
        let routed: AsyncStream<RoutedStream>
    }

    /// Requests go to `http1`'s responder, one stream at a time.
    let http1: HTTP1Channel
    let streamsMax: Int
    /// A connection with no open stream and no frame for this long is closed with GOAWAY; nil: never.
    let idleTimeout: TimeAmount?
    /// Plain single publishes answered on the event loop; nil: all to the router.
    let fastPublish: FastPublish?

    /// Past this, NIO itself ends the connection: only a client that ignores
    /// both our SETTINGS and our REFUSED_STREAM resets gets there.
    var hardStreamsMax: Int { streamsMax * 2 }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Streams> {
        channel.eventLoop.makeCompletedFuture {
            let manager = HTTP2ConnectionManager(streamsMax: streamsMax, idleTimeout: idleTimeout)
            let loopBoundManager = NIOLoopBound(manager, eventLoop: channel.eventLoop)
            let (routed, continuation) = AsyncStream.makeStream(of: RoutedStream.self)
            let fastPublish = self.fastPublish
            // Before NIOHTTP2Handler, so it sees the SETTINGS frame on its way out.
            try channel.pipeline.syncOperations.addHandler(AdvertisedStreamsLimit(streamsMax: streamsMax))
            var connection = NIOHTTP2Handler.ConnectionConfiguration()
            connection.initialSettings = [
                HTTP2Setting(parameter: .maxConcurrentStreams, value: hardStreamsMax),
                HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
            ]
            _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                mode: .server, connectionConfiguration: connection, streamConfiguration: .init()
            ) { stream -> EventLoopFuture<Void> in
                stream.eventLoop.makeCompletedFuture {
                    let id = try stream.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)
                    guard loopBoundManager.value.admit(stream, id: id) else {
                        try stream.pipeline.syncOperations.addHandler(RefuseStream())
                        return
                    }
                    let route: (any Channel) throws -> Void = { stream in
                        try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                        try stream.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(logger: logger))
                        continuation.yield(try NIOAsyncChannel(wrappingChannelSynchronously: stream))
                    }
                    if let fastPublish {
                        try stream.pipeline.syncOperations.addHandler(FastPublishHandler(fastPublish, route: route))
                    } else {
                        try route(stream)
                    }
                }
            }
            try channel.pipeline.syncOperations.addHandler(manager)
            channel.closeFuture.whenComplete { _ in continuation.finish() }
            return Streams(routed: routed)
        }
    }

    func handle(_ streams: Streams, logger: Logger) async {
        await withDiscardingTaskGroup { group in
            for await channel in streams.routed {
                group.addTask { await http1.handleHTTP(asyncChannel: channel, logger: logger) }
            }
        }
    }
}

/// The connection's side of stream admission, idleness and graceful close;
/// sits after NIOHTTP2Handler and sees the connection-level frames.
final class HTTP2ConnectionManager: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let streamsMax: Int
    let idleTimeout: TimeAmount?
    private var context: ChannelHandlerContext?
    private var openStreams = 0
    private var lastStreamID = HTTP2StreamID.rootStream
    private var closing = false
    private var idleTimer: Scheduled<Void>?

    init(streamsMax: Int, idleTimeout: TimeAmount?) {
        self.streamsMax = streamsMax
        self.idleTimeout = idleTimeout
    }

    /// Whether a new stream may open; an admitted stream counts until its channel closes.
    func admit(_ stream: any Channel, id: HTTP2StreamID?) -> Bool {
        if let id, id > lastStreamID { lastStreamID = id }
        guard !closing, openStreams < streamsMax else { return false }
        openStreams += 1
        idleTimer?.cancel()
        idleTimer = nil
        let loopBoundSelf = NIOLoopBound(self, eventLoop: stream.eventLoop)
        stream.closeFuture.whenComplete { _ in loopBoundSelf.value.streamClosed() }
        return true
    }

    private func streamClosed() {
        openStreams -= 1
        guard openStreams == 0, let context else { return }
        if closing {
            context.close(promise: nil)
        } else {
            startIdleTimer(context: context)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        startIdleTimer(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Any frame is traffic: an idle connection's timer starts again.
        if openStreams == 0 && !closing { startIdleTimer(context: context) }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Graceful shutdown: no new streams; close once the open ones end.
            goAway(context: context, reason: "shutting down")
            if openStreams == 0 { context.close(promise: nil) }
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIOHTTP2Handler has sent GOAWAY for a connection error already.
        context.close(promise: nil)
    }

    private func startIdleTimer(context: ChannelHandlerContext) {
        guard let idleTimeout else { return }
        idleTimer?.cancel()
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: idleTimeout) {
            let manager = loopBoundSelf.value
            guard manager.openStreams == 0, let context = manager.context else { return }
            manager.goAway(context: context, reason: "idle")
            context.close(promise: nil)
        }
    }

    /// One GOAWAY naming the last stream we took: a client retries any later one elsewhere.
    private func goAway(context: ChannelHandlerContext, reason: String) {
        guard !closing else { return }
        closing = true
        idleTimer?.cancel()
        idleTimer = nil
        let frame = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: context.channel.allocator.buffer(string: reason)))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}

@available(*, unavailable)
extension HTTP2ConnectionManager: Sendable {}

/// A stream past the limit: RST_STREAM REFUSED_STREAM as soon as it is
/// active, and nothing it sends is read.
final class RefuseStream: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.rstStream(.refusedStream)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

@available(*, unavailable)
extension RefuseStream: Sendable {}

/// Rewrites SETTINGS_MAX_CONCURRENT_STREAMS in the server's first SETTINGS
/// frame (the connection preface, RFC 9113 §3.4) from NIO's hard limit to
/// `streamsMax`, then leaves the pipeline. NIO enforces exactly what it
/// advertises, and closes the connection over it; this way well-behaved
/// clients keep to `streamsMax` while NIO's state machine allows the
/// headroom in which we refuse single streams (``HTTP2Connection``).
final class AdvertisedStreamsLimit: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let streamsMax: Int

    init(streamsMax: Int) {
        self.streamsMax = streamsMax
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .byteBuffer(var buffer) = unwrapOutboundIn(data) {
            Self.rewrite(&buffer, streamsMax: UInt32(streamsMax))
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        } else {
            context.write(data, promise: promise)
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Sets the value of setting 0x3 in a SETTINGS frame (type 4, no ACK,
    /// stream 0) at the buffer's start; anything else is left alone.
    static func rewrite(_ buffer: inout ByteBuffer, streamsMax: UInt32) {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= 9,
            let length = buffer.getInteger(at: start, as: UInt32.self).map({ $0 >> 8 }),
            buffer.getInteger(at: start + 3, as: UInt8.self) == 0x4,
            buffer.getInteger(at: start + 4, as: UInt8.self) == 0,
            buffer.getInteger(at: start + 5, as: UInt32.self) == 0,
            length % 6 == 0, buffer.readableBytes >= 9 + Int(length)
        else { return }
        var offset = start + 9
        while offset < start + 9 + Int(length) {
            if buffer.getInteger(at: offset, as: UInt16.self) == 0x3 {
                buffer.setInteger(streamsMax, at: offset + 2)
            }
            offset += 6
        }
    }
}

@available(*, unavailable)
extension AdvertisedStreamsLimit: Sendable {}
