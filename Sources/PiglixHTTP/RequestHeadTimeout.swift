import NIOCore
import NIOHTTPTypes

/// HTTP/1.1: a request head must be complete within `timeout`, counted from
/// the connection's accept for its first request and from the first byte
/// of each later one; otherwise the connection is closed (a slowloris
/// client dripping header lines holds no socket for long). Between
/// requests the idle timeout applies instead. Sits before the HTTP decoder,
/// where bytes arrive; ``RequestHeadWatcher``, after it, says when a head
/// was decoded and when a response ended.
final class RequestHeadTimeout: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let timeout: TimeAmount
    private let firstDeadline: NIODeadline
    /// Requests whose head arrived and whose response has not ended.
    private var openRequests = 0
    /// A request body is being read (its response may have ended already,
    /// as after an early 413): its bytes are not the next head's.
    private var bodyOpen = false
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount, acceptedAt: NIODeadline) {
        self.timeout = timeout
        self.firstDeadline = acceptedAt + timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        startTimer(context: context, deadline: firstDeadline)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The first byte after an idle spell starts the next head's clock.
        if openRequests == 0 && !bodyOpen && timer == nil { startTimer(context: context, deadline: .now() + timeout) }
        context.fireChannelRead(data)
    }

    func headReceived() {
        openRequests += 1
        bodyOpen = true
        timer?.cancel()
        timer = nil
    }

    func bodyEnded() {
        bodyOpen = false
    }

    func responseEnded() {
        openRequests = max(0, openRequests - 1)
    }

    private func startTimer(context: ChannelHandlerContext, deadline: NIODeadline) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension RequestHeadTimeout: Sendable {}

/// After the HTTP/1.1 decoder: tells ``RequestHeadTimeout`` of each decoded
/// head, each request body's end and each ended response.
final class RequestHeadWatcher: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var clock: RequestHeadTimeout?

    func handlerAdded(context: ChannelHandlerContext) {
        clock = try? context.pipeline.syncOperations.handler(type: RequestHeadTimeout.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: clock?.headReceived()
        case .end: clock?.bodyEnded()
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { clock?.responseEnded() }
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension RequestHeadWatcher: Sendable {}
