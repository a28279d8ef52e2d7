import Dispatch
import HTTPTypes
import Metrics
import NIOCore
import NIOHPACK
import NIOHTTP2
import PiglixBroker
import PiglixTopics
import PiglixWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `POST /v1/topics/{topic}` over HTTP/2, answered on the stream's event loop
/// (docs/performance.md, "Single POST on the event loop").
///
/// Through the router a single publish costs a stream channel, an async
/// channel, a task, Hummingbird's request and response, the middleware and
/// their hops: about 125 µs of CPU against nghttpd's 2.2 µs. Plain requests
/// (the common case) are instead read from the stream's frames, published
/// with the broker's synchronous single-node publish and answered with two
/// frames, with the same status, headers, body and metrics as the router
/// gives; in a cluster the answer is written when the group layer acks. Anything
/// else goes to the router untouched: authorization, CORS (`Origin`), compressed or
/// idempotent publishes, user headers, a query, a missing `Content-Length`,
/// a topic or level the router would refuse.
public struct FastPublish: Sendable {
    let broker: Broker
    let messageBytesMax: Int
    let metrics: FastPublishMetrics

    /// Nil where the fast path does not apply to any request of the node.
    init?(broker: Broker, settings: ServerSettings) {
        guard settings.authorizer == nil else { return nil }
        self.broker = broker
        self.messageBytesMax = settings.broker.messageBytesMax
        self.metrics = FastPublishMetrics()
    }

    /// What a request the fast path takes needs from its head.
    struct Request {
        var topic: String
        var delivery: DeliveryLevel
        var length: Int
    }

    static let pathPrefix = "/v1/topics/"

    /// The request if its head is a plain single publish; nil for the router.
    func accept(_ headers: HPACKHeaders) -> Request? {
        var method: Substring?
        var path: Substring?
        var length: Int?
        var delivery = DeliveryLevel.fifo
        for (name, value, _) in headers {
            switch name {
            case ":method": method = Substring(value)
            case ":path": path = Substring(value)
            case ":scheme", ":authority", "content-type", "accept", "accept-encoding", "user-agent", "te":
                continue
            case "content-length":
                guard length == nil, let n = Int(value), n >= 0, n <= messageBytesMax else { return nil }
                length = n
            case "piglix-delivery":
                guard let level = DeliveryLevel(name: value.trimmingCharacters(in: " \t").lowercased()) else { return nil }
                delivery = level
            default:
                // Origin, Authorization, Content-Encoding, Piglix-Producer,
                // Piglix-Header-*, …: the router's.
                return nil
            }
        }
        guard method == "POST", let length, let path, path.hasPrefix(Self.pathPrefix) else { return nil }
        let raw = path.dropFirst(Self.pathPrefix.count)
        guard !raw.isEmpty, !raw.contains(where: { $0 == "/" || $0 == "?" || $0 == "#" }) else { return nil }
        let topic = RequestParsing.percentDecoded(raw)
        guard (try? broker.check(topic: topic, payloadBytes: 0)) != nil else { return nil }
        return Request(topic: topic, delivery: delivery, length: length)
    }

    /// Publishes a request's message and gives `answer` the response:
    /// status, headers and body as `PublishRoute.publishOne` and the router
    /// give them. On one node at once; in a cluster when the message reached
    /// its level here (`answer` then runs on the cluster's thread).
    func publish(
        _ request: Request, body: ByteBuffer, started: UInt64, answer: @escaping @Sendable ((HPACKHeaders, ByteBuffer)) -> Void
    ) {
        let record = PublishRecord(topic: request.topic, payload: body, delivery: request.delivery)
        guard broker.isClustered else {
            let result: Result<PublishReceipt, PublishError>
            do throws(PublishError) { result = .success(try broker.publish(record)) } catch { result = .failure(error) }
            return answer(response(result, started: started))
        }
        broker.publish([record], session: 0) { [self] results in answer(response(results[0], started: started)) }
    }

    private func response(_ result: Result<PublishReceipt, PublishError>, started: UInt64) -> (HPACKHeaders, ByteBuffer) {
        var headers = HPACKHeaders()
        var out: ByteBuffer
        let status: Int
        switch result {
        case .success(let receipt):
            status = receipt.status
            out = ByteBuffer()
            out.reserveCapacity(64)
            AckCodec.writeOK(id: receipt.id, delivery: receipt.delivery, status: status, binary: false, into: &out)
            headers.reserveCapacity(7)
            headers.add(name: ":status", value: HTTPDate.statusText(status))
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "piglix-message-id", value: receipt.id.description)
        case .failure(let error):
            let problem = PublishRoute.problem(error)
            status = problem.status.code
            out = problem.body()
            headers.add(name: ":status", value: HTTPDate.statusText(status))
            headers.add(name: "content-type", value: "application/problem+json")
            for field in problem.headers { headers.add(name: field.name.canonicalName, value: field.value) }
        }
        headers.add(name: "content-length", value: String(out.readableBytes))
        headers.add(name: "date", value: HTTPDate.now())
        headers.add(name: "server", value: "piglix")
        metrics.record(status: status, nanoseconds: DispatchTime.now().uptimeNanoseconds &- started)
        return (headers, out)
    }

    /// A body over the limit: the router's 413.
    func tooLarge() -> (HPACKHeaders, ByteBuffer) {
        let problem = Problem(.contentTooLarge, "message is over the limit of \(messageBytesMax) bytes")
        let out = problem.body()
        var headers = HPACKHeaders()
        headers.add(name: ":status", value: "413")
        headers.add(name: "content-type", value: "application/problem+json")
        headers.add(name: "content-length", value: String(out.readableBytes))
        headers.add(name: "date", value: HTTPDate.now())
        headers.add(name: "server", value: "piglix")
        metrics.record(status: 413, nanoseconds: 0)
        return (headers, out)
    }
}

/// The router's request metrics (Hummingbird's `MetricsMiddleware`: the same
/// labels and dimensions), for the requests the fast path answers.
final class FastPublishMetrics: Sendable {
    private struct Endpoint: Sendable {
        let counter: Counter
        let timer: Metrics.Timer
        let errors: Counter?
    }
    private let ok: Endpoint
    private let accepted: Endpoint

    init() {
        ok = Self.endpoint(200)
        accepted = Self.endpoint(202)
    }

    private static func endpoint(_ status: Int) -> Endpoint {
        let dimensions = [
            ("http.route", "/v1/topics/{topic}"), ("http.request.method", "POST"), ("http.response.status_code", String(status)),
        ]
        let errors =
            status >= 400
            ? Counter(
                label: "hb.request.errors",
                dimensions: [("http.route", "/v1/topics/{topic}"), ("http.request.method", "POST"), ("error.type", String(status))])
            : nil
        return Endpoint(
            counter: Counter(label: "hb.requests", dimensions: dimensions),
            timer: Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds),
            errors: errors)
    }

    func record(status: Int, nanoseconds: UInt64) {
        switch status {
        case 202:
            accepted.counter.increment()
            accepted.timer.recordNanoseconds(nanoseconds)
        case 200:
            ok.counter.increment()
            ok.timer.recordNanoseconds(nanoseconds)
        default:
            // Errors are rare: their metrics are made when needed, as the
            // middleware does (an error counts in hb.requests and errors only).
            let endpoint = Self.endpoint(status)
            endpoint.counter.increment()
            endpoint.errors?.increment()
        }
    }
}

/// Sits first in an HTTP/2 stream's pipeline. A plain single publish is
/// read, published and answered here; any other request is handed to the
/// router: `route` adds the router's handlers behind this one, and this
/// handler passes the head on and leaves.
final class FastPublishHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum State {
        case head
        case body(FastPublish.Request)
        case answered
    }

    private let fast: FastPublish
    private let route: (any Channel) throws -> Void
    private var state = State.head
    private var body = ByteBuffer()
    private var started: UInt64 = 0

    init(_ fast: FastPublish, route: @escaping (any Channel) throws -> Void) {
        self.fast = fast
        self.route = route
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        switch state {
        case .head:
            guard case .headers(let head) = payload, let request = fast.accept(head.headers) else {
                return handOver(context: context, data: data)
            }
            started = DispatchTime.now().uptimeNanoseconds
            if head.endStream { return finish(request, context: context) }
            body = context.channel.allocator.buffer(capacity: request.length)
            state = .body(request)
        case .body(let request):
            switch payload {
            case .data(let frame):
                guard case .byteBuffer(var bytes) = frame.data else { return }
                guard body.readableBytes + bytes.readableBytes <= fast.messageBytesMax else {
                    answer(context: context, fast.tooLarge())
                    context.close(promise: nil)
                    return
                }
                body.writeBuffer(&bytes)
                if frame.endStream { finish(request, context: context) }
            case .headers(let trailers) where trailers.endStream:
                finish(request, context: context)
            default:
                break
            }
        case .answered:
            break
        }
    }

    private func finish(_ request: FastPublish.Request, context: ChannelHandlerContext) {
        let payload = body
        body = ByteBuffer()
        state = .answered
        let eventLoop = context.eventLoop
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: eventLoop)
        fast.publish(request, body: payload, started: started) { response in
            // At once on one node (on this loop); from the cluster's thread in a cluster.
            if eventLoop.inEventLoop {
                loopBound.value.handler.answer(context: loopBound.value.context, response)
            } else {
                eventLoop.execute { loopBound.value.handler.answer(context: loopBound.value.context, response) }
            }
        }
    }

    private func answer(context: ChannelHandlerContext, _ response: (HPACKHeaders, ByteBuffer)) {
        state = .answered
        // A client that reset the stream while a cluster publish was on its way gets nothing.
        guard context.channel.isActive else { return }
        context.write(wrapOutboundOut(.headers(.init(headers: response.0))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(response.1), endStream: true))), promise: nil)
    }

    /// Not a plain publish: the router's handlers go behind this one, the
    /// head follows them, and this handler leaves the pipeline.
    private func handOver(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try route(context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension FastPublishHandler: Sendable {}

/// The `Date` header's value (RFC 9110 IMF-fixdate), formatted once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static func now() -> String {
        let seconds = time(nil)
        return cache.withLock { cached in
            if cached.second != seconds { cached = (seconds, format(seconds)) }
            return cached.text
        }
    }

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func format(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let date = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900)"
        return "\(date) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    static func statusText(_ status: Int) -> String {
        switch status {
        case 200: "200"
        case 202: "202"
        default: String(status)
        }
    }
}
