import NIOCore
import NIOHPACK
import NIOHTTP2
import PiglixWire
import Synchronization

/// What a stream's response handler hands on, on the stream's event loop.
enum ResponseEvent: Sendable {
    case head(status: Int, headers: HPACKHeaders)
    case body(ByteBuffer)
    /// The response ended (END_STREAM).
    case end
    case failed(PiglixClientError)
}

/// Receives a stream's response events on its event loop. Returns false from
/// `receive` to stop reading (backpressure) until the handler is told to resume.
/// Created on the stream's event loop and used only there.
protocol ResponseSink: AnyObject {
    func receive(_ event: ResponseEvent) -> Bool
}

/// The handler on each client HTTP/2 stream channel: turns raw frame payloads
/// into ``ResponseEvent``s, without the HTTP/1 codec in between, and holds
/// reads while its sink says so, which stops window updates and so applies
/// HTTP/2 flow control to the server.
final class ResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Set once by the stream initializer, before the handler is added.
    var sink: (any ResponseSink)?
    private var done = false
    private var paused = false
    private var readHeld = false
    private var sawHead = false
    private var context: ChannelHandlerContext?

    init() {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if !sawHead {
                guard let statusText = headers.headers.first(name: ":status"), let status = Int(statusText) else {
                    finish(.failed(.protocolViolation("response without :status")), context: context)
                    return
                }
                // 1xx informational heads are skipped.
                if status >= 200 {
                    sawHead = true
                    deliver(.head(status: status, headers: headers.headers))
                }
            }
            if headers.endStream { finish(.end, context: context) }
        case .data(let data):
            if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 { deliver(.body(buffer)) }
            if data.endStream { finish(.end, context: context) }
        case .rstStream(let code):
            finish(.failed(.connectionLost(reason: "the server reset the stream (\(code))")), context: context)
        default:
            break
        }
    }

    private func deliver(_ event: ResponseEvent) {
        if sink?.receive(event) == false { paused = true }
    }

    private func finish(_ event: ResponseEvent, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        _ = sink?.receive(event)
        sink = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failed(.connectionLost(reason: "the stream closed before the response ended")), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failed(.connectionLost(reason: "\(error)")), context: context)
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// The sink wants more: reads go on.
    func resume() {
        paused = false
        if readHeld, let context {
            readHeld = false
            context.read()
        }
    }
}

@available(*, unavailable)
extension ResponseHandler: Sendable {}

/// Completes a continuation once, from whichever side gets there first.
final class OnceContinuation<Value: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<Value, any Error>?>
    init(_ continuation: CheckedContinuation<Value, any Error>) {
        self.continuation = Mutex(continuation)
    }
    func resume(_ result: Result<Value, any Error>) {
        continuation.withLock { $0.take() }?.resume(with: result)
    }
}

/// Collects a whole (short) response and completes a continuation.
final class CollectingSink: ResponseSink {
    private let once: OnceContinuation<PiglixClient.WholeResponse>
    private var status = 0
    private var headers = HPACKHeaders()
    private var body = ByteBuffer()
    private let bodyBytesMax: Int

    init(once: OnceContinuation<PiglixClient.WholeResponse>, bodyBytesMax: Int) {
        self.once = once
        self.bodyBytesMax = bodyBytesMax
    }

    func receive(_ event: ResponseEvent) -> Bool {
        switch event {
        case .head(let status, let headers):
            self.status = status
            self.headers = headers
        case .body(var bytes):
            if body.readableBytes + bytes.readableBytes > bodyBytesMax {
                once.resume(.failure(PiglixClientError.responseTooLarge(limit: bodyBytesMax)))
            } else {
                body.writeBuffer(&bytes)
            }
        case .end:
            once.resume(.success(.init(status: status, headers: headers, body: body)))
        case .failed(let error):
            once.resume(.failure(error))
        }
        return true
    }
}

@available(*, unavailable)
extension CollectingSink: Sendable {}

/// A response read as an async sequence of events with backpressure: the
/// stream stops reading when `highWatermark` chunks wait for the consumer.
struct ResponseStream: Sendable {
    typealias Events = NIOThrowingAsyncSequenceProducer<
        ResponseEvent, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, ReadDelegate
    >
    let channel: any Channel
    let events: Events

    /// Resumes reads on the stream's event loop; closes the stream when the
    /// consumer goes away.
    final class ReadDelegate: NIOAsyncSequenceProducerDelegate {
        private let handler: NIOLoopBound<ResponseHandler>
        private let channel: any Channel
        init(handler: NIOLoopBound<ResponseHandler>, channel: any Channel) {
            self.handler = handler
            self.channel = channel
        }
        func produceMore() {
            let handler = self.handler
            handler.eventLoop.execute { handler.value.resume() }
        }
        func didTerminate() {
            channel.close(promise: nil)
        }
    }

    /// Pushes events into the producer, on the event loop.
    final class ProducerSink: ResponseSink {
        let source: Events.Source
        init(source: Events.Source) { self.source = source }
        func receive(_ event: ResponseEvent) -> Bool {
            switch event {
            case .head, .body:
                switch source.yield(event) {
                case .produceMore: return true
                case .stopProducing: return false
                case .dropped: return true
                }
            case .end:
                source.finish()
            case .failed(let error):
                source.finish(error)
            }
            return true
        }
    }

    /// Opens a stream whose response is read through ``events``.
    static func open(
        client: PiglixClient, method: String, path: String, headers: [(String, String)], body: ByteBuffer? = nil,
        endRequest: Bool = true, chunksBuffered: Int = 8
    ) async throws -> ResponseStream {
        try await client.openStream(method: method, path: path, headers: headers, body: body, endRequest: endRequest) {
            channel, handler in
            let sequence = Events.makeSequence(
                backPressureStrategy: .init(lowWatermark: chunksBuffered / 2, highWatermark: chunksBuffered),
                finishOnDeinit: true,
                delegate: ReadDelegate(handler: handler, channel: channel))
            return (ProducerSink(source: sequence.source), ResponseStream(channel: channel, events: sequence.sequence))
        }
    }
}

extension PiglixClient {
    func requestHeaders(method: String, path: String, extra: [(String, String)]) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.reserveCapacity(5 + extra.count)
        headers.add(name: ":method", value: method)
        headers.add(name: ":scheme", value: "http")
        headers.add(name: ":authority", value: port == 80 ? host : "\(host):\(port)")
        headers.add(name: ":path", value: path)
        headers.add(name: "user-agent", value: "piglix-swift")
        for (name, value) in extra { headers.add(name: name, value: value) }
        return headers
    }

    /// Opens a stream, lets `setup` make its sink (on the stream's event loop),
    /// and sends the request head, then `body` if given. Returns what `setup` made.
    func openStream<Output: Sendable>(
        method: String, path: String, headers extra: [(String, String)], body: ByteBuffer?, endRequest: Bool,
        setup: @escaping @Sendable (any Channel, NIOLoopBound<ResponseHandler>) -> (any ResponseSink, Output)
    ) async throws -> Output {
        let connection = try await connection()
        let head = requestHeaders(method: method, path: path, extra: extra)
        let endHeaders = endRequest && body == nil
        let output = connection.channel.eventLoop.makePromise(of: Output.self)
        let channelFuture = connection.multiplexer.createStreamChannel { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = ResponseHandler()
                let (sink, made) = setup(channel, NIOLoopBound(handler, eventLoop: channel.eventLoop))
                handler.sink = sink
                try channel.pipeline.syncOperations.addHandler(handler)
                channel.write(HTTP2Frame.FramePayload.headers(.init(headers: head, endStream: endHeaders)), promise: nil)
                if let body {
                    channel.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(body), endStream: endRequest)), promise: nil)
                }
                channel.flush()
                output.succeed(made)
            }
        }
        do {
            _ = try await channelFuture.get()
        } catch {
            output.fail(error)
            // The connection cannot open streams (it may be closing without
            // having reported it yet): drop it, so the next call reconnects.
            discard(connection)
            throw PiglixClientError.connectionLost(reason: "could not open a stream: \(error)")
        }
        return try await output.futureResult.get()
    }
}
