import PiglixTopics
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import PiglixWire
import Synchronization

/// A Piglix client over HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3): one
/// TCP connection per client, one HTTP/2 stream per call, so a publisher
/// stream, any number of subscriptions and single publishes share it.
///
/// The connection opens on first use (or with ``connect()``) and reopens on
/// the next call after it was lost; a ``Subscription`` does that by itself
/// with backoff and resumes where it stopped.
///
/// ```swift
/// let client = PiglixClient(host: "127.0.0.1", port: 8080)
/// let ack = try await client.publish(topic: "a.b", payload: ByteBuffer(string: "hello"))
/// for try await record in client.subscribe(patterns: ["a.*"]) { … }
/// try await client.close()
/// ```
public final class PiglixClient: Sendable {
    /// The first node's address (``endpoints`` lists them all).
    public let host: String
    /// The first node's HTTP port.
    public let port: Int
    /// The nodes this client may use, in the order it tries them: after a
    /// connection fails or is lost, or a node answers 503 (outside the
    /// primary component), the next call goes to the next one.
    public let endpoints: [Endpoint]
    public let settings: PiglixClientSettings
    let group: any EventLoopGroup
    private let state = Mutex(State.idle)
    /// Index in `endpoints` of the node new connections go to.
    private let currentIndex = Mutex(0)

    /// One node's address.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }
    /// Bytes on the TCP connection(s) of this client, HTTP/2 framing included.
    let counters = WireCounters()

    private enum State {
        case idle
        case connecting(EventLoopFuture<Connection>)
        case connected(Connection)
        case closed
    }

    /// - Parameters:
    ///   - host: the node's address or name.
    ///   - port: the node's HTTP port.
    ///   - settings: windows, limits and reconnect policy.
    ///   - eventLoopGroup: where the connection runs; NIO's shared group by default.
    public convenience init(
        host: String, port: Int, settings: PiglixClientSettings = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.init(endpoints: [Endpoint(host: host, port: port)], settings: settings, eventLoopGroup: eventLoopGroup)
    }

    /// A client of several nodes of one cluster (at least one): it uses one
    /// at a time and moves to the next when that one fails (see
    /// ``endpoints``). Subscriptions resume on the next node after the last
    /// message seen; ``IdempotentPublisher`` resends a record whose answer
    /// was lost with its sequence number, so it is not published twice.
    public init(
        endpoints: [Endpoint], settings: PiglixClientSettings = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        precondition(!endpoints.isEmpty, "a PiglixClient needs at least one endpoint")
        self.host = endpoints[0].host
        self.port = endpoints[0].port
        self.endpoints = endpoints
        self.settings = settings
        self.group = eventLoopGroup
    }

    /// A client for several node URLs, `http://host:port` each (see
    /// ``init(endpoints:settings:eventLoopGroup:)``).
    public convenience init(urls: [String], settings: PiglixClientSettings = .init()) throws(PiglixClientError) {
        guard !urls.isEmpty else { throw .invalidURL("", reason: "give at least one node URL") }
        var endpoints: [Endpoint] = []
        for url in urls { endpoints.append(try Self.endpoint(url)) }
        self.init(endpoints: endpoints, settings: settings)
    }

    /// A client for `http://host:port` (no path, no TLS in this build).
    public convenience init(url: String, settings: PiglixClientSettings = .init()) throws(PiglixClientError) {
        let endpoint = try Self.endpoint(url)
        self.init(host: endpoint.host, port: endpoint.port, settings: settings)
    }

    /// The node the next connection goes to.
    public var currentEndpoint: Endpoint { endpoints[currentIndex.withLock { $0 }] }

    /// Moves to the next node and drops the connection to the current one:
    /// called when a connection fails or a node answers 503. With one
    /// endpoint it only drops the connection.
    public func failover() {
        currentIndex.withLock { $0 = ($0 + 1) % endpoints.count }
        let previous = state.withLock { state -> State? in
            guard case .connected = state else { return nil }
            defer { state = .idle }
            return state
        }
        if case .connected(let connection)? = previous { connection.channel.close(promise: nil) }
    }

    static func endpoint(_ url: String) throws(PiglixClientError) -> Endpoint {
        var rest = Substring(url)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.contains("://") {
            throw .invalidURL(url, reason: "only http:// (HTTP/2 prior knowledge) is supported")
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        var host = rest
        var port = 80
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let number = Int(after.dropFirst()) else { throw .invalidURL(url, reason: "bad port") }
                port = number
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let number = Int(rest[rest.index(after: colon)...]) else { throw .invalidURL(url, reason: "bad port") }
            port = number
        }
        if host.isEmpty || host.contains("/") { throw .invalidURL(url, reason: "expected http://host:port") }
        return Endpoint(host: String(host), port: port)
    }

    /// Bytes sent and received on this client's TCP connections so far.
    public var wireBytes: (sent: Int, received: Int) {
        (counters.sent.load(ordering: .relaxed), counters.received.load(ordering: .relaxed))
    }

    /// Opens the connection now rather than on first use.
    public func connect() async throws {
        _ = try await connection()
    }

    /// Closes the connection; open streams end with ``PiglixClientError/connectionLost(reason:)``
    /// and later calls throw ``PiglixClientError/closed``.
    public func close() async throws {
        let previous = state.withLock { state -> State in
            let previous = state
            state = .closed
            return previous
        }
        switch previous {
        case .connected(let connection):
            try? await connection.channel.close()
        case .connecting(let future):
            if let connection = try? await future.get() { try? await connection.channel.close() }
        case .idle, .closed:
            break
        }
    }

    // MARK: Connection

    /// The live connection, opening one if there is none.
    func connection() async throws -> Connection {
        let future = state.withLock { state -> EventLoopFuture<Connection> in
            switch state {
            case .connected(let connection) where connection.channel.isActive:
                return connection.channel.eventLoop.makeSucceededFuture(connection)
            case .connecting(let future):
                return future
            case .closed:
                return group.any().makeFailedFuture(PiglixClientError.closed)
            case .idle, .connected:
                let future = makeConnection()
                state = .connecting(future)
                return future
            }
        }
        return try await future.get()
    }

    /// Forgets `connection` if it is the current one, and closes it.
    func discard(_ connection: Connection) {
        state.withLock { state in
            if case .connected(let current) = state, current.channel === connection.channel { state = .idle }
        }
        connection.channel.close(promise: nil)
    }

    private func makeConnection() -> EventLoopFuture<Connection> {
        let settings = self.settings
        let counters = self.counters
        let endpoint = currentEndpoint
        let host = endpoint.host
        let port = endpoint.port
        let future = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(settings.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WireCountingHandler(counters: counters))
                    var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
                    connectionConfiguration.initialSettings = [
                        HTTP2Setting(parameter: .maxConcurrentStreams, value: 1000),
                        HTTP2Setting(parameter: .initialWindowSize, value: settings.streamWindowBytes),
                        HTTP2Setting(parameter: .maxFrameSize, value: settings.maxFrameBytes),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
                        HTTP2Setting(parameter: .enablePush, value: 0),
                    ]
                    connectionConfiguration.targetWindowSize = settings.connectionWindowBytes
                    var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
                    streamConfiguration.targetWindowSize = settings.streamWindowBytes
                    // Our writes are bounded by the publisher's in-flight limit, not by these.
                    streamConfiguration.outboundBufferSizeHighWatermark = 1 << 20
                    streamConfiguration.outboundBufferSizeLowWatermark = 1 << 19
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: connectionConfiguration,
                        streamConfiguration: streamConfiguration,
                        // The server never opens streams toward us (no push).
                        inboundStreamInitializer: { $0.close() })
                    try channel.pipeline.syncOperations.addHandler(MultiplexerHolder(multiplexer))
                }
            }
            .connect(host: host, port: port)
            .flatMapThrowing { channel -> Connection in
                let holder = try channel.pipeline.syncOperations.handler(type: MultiplexerHolder.self)
                return Connection(channel: channel, multiplexer: holder.multiplexer)
            }
            .flatMapErrorThrowing { error in
                throw PiglixClientError.connectFailed(host: host, port: port, reason: "\(error)")
            }
        // The state holds this very future: the callbacks below compare identity.
        future.whenComplete { [self] result in
            state.withLock { state in
                guard case .connecting(let pending) = state, pending === future else { return }
                switch result {
                case .success(let connection): state = .connected(connection)
                case .failure: state = .idle
                }
            }
            // The next attempt goes to the next node.
            if case .failure = result { currentIndex.withLock { $0 = ($0 + 1) % endpoints.count } }
            if case .success(let connection) = result {
                connection.channel.closeFuture.whenComplete { [self] _ in
                    let lost = state.withLock { state -> Bool in
                        guard case .connected(let current) = state, current.channel === connection.channel else { return false }
                        state = .idle
                        return true
                    }
                    // Lost while current (the node died, say): the next
                    // connection goes to the next node.
                    if lost, endpoints.count > 1 { currentIndex.withLock { $0 = ($0 + 1) % endpoints.count } }
                }
            }
        }
        return future
    }

    // MARK: Single publish

    /// Publishes one message with `POST /v1/topics/{topic}`.
    ///
    /// - Parameters:
    ///   - topic: a literal topic such as `sensors.paris.temp`.
    ///   - payload: the message bytes.
    ///   - delivery: `fifo` (default), `total` or `safe` (answered once stable).
    ///   - headers: user headers, sent as `Piglix-Header-<name>`.
    /// - Returns: the ack with the message id.
    /// - Throws: ``PiglixClientError/http(status:detail:)`` with the server's
    ///   problem `detail` on a 4xx or 5xx, or a connection error.
    ///   - idempotence: the producer's name and this record's sequence
    ///     number (`Piglix-Producer`, `Piglix-Sequence`): a retry of a record
    ///     the cluster already accepted is answered with the original id and
    ///     not delivered again (docs/patterns.md).
    public func publish(
        topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = [],
        idempotence: (producer: String, sequence: UInt64)? = nil
    ) async throws -> PublishAck {
        var extra: [(String, String)] = [("content-length", String(payload.readableBytes))]
        if delivery != .fifo { extra.append(("piglix-delivery", delivery.name)) }
        if let idempotence {
            extra.append(("piglix-producer", idempotence.producer))
            extra.append(("piglix-sequence", String(idempotence.sequence)))
        }
        for header in headers { extra.append(("piglix-header-\(header.name.lowercased())", header.value)) }
        let response = try await request(
            method: "POST", path: "/v1/topics/\(Self.percentEncoded(topic))", headers: extra, body: payload)
        guard (200..<300).contains(response.status) else {
            throw PiglixClientError.http(status: response.status, detail: ProblemDetail.detail(from: response.body))
        }
        var ack = try AckCodec.decodeJSON(response.body)
        ack.status = response.status
        return ack
    }

    /// Acknowledges work queue messages (`POST /v1/ack`, docs/patterns.md,
    /// "Work queues"): one result per id, in order, true when this ack
    /// removed it from the queue, false when it was not unacked there
    /// (acked already, never queued).
    public func ack(queue: String, ids: [String]) async throws -> [Bool] {
        var body = ByteBuffer()
        body.writeStaticString("{\"queue\":")
        body.writeJSONString(queue)
        body.writeStaticString(",\"ids\":[")
        for (i, id) in ids.enumerated() {
            if i > 0 { body.writeStaticString(",") }
            body.writeJSONString(id)
        }
        body.writeStaticString("]}")
        let response = try await request(
            method: "POST", path: "/v1/ack",
            headers: [("content-type", "application/json"), ("content-length", String(body.readableBytes))], body: body)
        guard response.status == 200 else {
            throw PiglixClientError.http(status: response.status, detail: ProblemDetail.detail(from: response.body))
        }
        let value = try response.body.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        guard case .object(let fields) = value, case .array(let results)? = fields.first(where: { $0.0 == "results" })?.1 else {
            throw PiglixClientError.http(status: response.status, detail: "an ack answer without results")
        }
        return results.map { item in
            guard case .object(let pairs) = item else { return false }
            return pairs.contains { $0.0 == "result" && $0.1 == .string("acked") }
        }
    }

    /// A whole response (status and body), for short calls.
    struct WholeResponse: Sendable {
        var status: Int
        var headers: HPACKHeaders
        var body: ByteBuffer
    }

    func request(method: String, path: String, headers: [(String, String)] = [], body: ByteBuffer?) async throws -> WholeResponse {
        let bodyBytesMax = settings.responseBytesMax
        return try await withCheckedThrowingContinuation { continuation in
            let once = OnceContinuation(continuation)
            Task {
                do {
                    try await openStream(method: method, path: path, headers: headers, body: body, endRequest: true) { _, _ in
                        (CollectingSink(once: once, bodyBytesMax: bodyBytesMax), ())
                    }
                } catch {
                    once.resume(.failure(error))
                }
            }
        }
    }

    static func percentEncoded(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        let hex: [Character] = Array("0123456789ABCDEF")
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "*"), UInt8(ascii: ">"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out.append("%")
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}

/// One TCP connection and its HTTP/2 stream multiplexer.
struct Connection: Sendable {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
}

/// Keeps the multiplexer reachable from the bootstrap's connect future.
final class MultiplexerHolder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Never
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    init(_ multiplexer: NIOHTTP2Handler.StreamMultiplexer) { self.multiplexer = multiplexer }
}

@available(*, unavailable)
extension MultiplexerHolder: Sendable {}

/// Tunables of a ``PiglixClient``, built once.
public struct PiglixClientSettings: Sendable {
    /// HTTP/2 receive window per stream: how far the server may run ahead of
    /// a subscriber that is not reading. Large, so a fast stream is not
    /// throttled by window updates.
    public var streamWindowBytes = 8 << 20
    /// HTTP/2 receive window of the whole connection.
    public var connectionWindowBytes = 16 << 20
    /// Largest HTTP/2 frame we accept.
    public var maxFrameBytes = 1 << 20
    /// Largest record (frame body or NDJSON/SSE line) accepted on a subscribe stream.
    public var recordBytesMax = 4 << 20
    /// Largest whole response body (single publish answers, errors).
    public var responseBytesMax = 1 << 20
    /// TCP connect timeout.
    public var connectTimeout: TimeAmount = .seconds(5)
    /// Reconnect policy of subscriptions.
    public var reconnect = ReconnectPolicy()

    public init() {}
}

/// Exponential backoff with jitter between reconnect attempts.
public struct ReconnectPolicy: Sendable {
    /// Delay before the second attempt (the first one after a loss is immediate).
    public var initialDelay: Duration = .milliseconds(50)
    /// Upper bound of the delay.
    public var maximumDelay: Duration = .seconds(2)
    /// Attempts in a row before the subscription fails; nil retries forever.
    public var attemptsMax: Int? = nil

    public init(initialDelay: Duration = .milliseconds(50), maximumDelay: Duration = .seconds(2), attemptsMax: Int? = nil) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.attemptsMax = attemptsMax
    }

    /// The delay before attempt `attempt` (0-based) of a run of failures.
    func delay(attempt: Int) -> Duration {
        if attempt == 0 { return .zero }
        let exponent = min(attempt - 1, 20)
        let base = min(initialDelay * (1 << exponent), maximumDelay)
        // Full jitter on the upper half, so many clients do not reconnect in step.
        return base / 2 + base / 2 * Double.random(in: 0...1)
    }
}

/// Why a call failed.
public enum PiglixClientError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The server answered a 4xx or 5xx; `detail` is its problem+json `detail`.
    case http(status: Int, detail: String)
    /// The TCP connection could not be opened.
    case connectFailed(host: String, port: Int, reason: String)
    /// The connection or stream ended before the call completed.
    case connectionLost(reason: String)
    /// The server sent something this client cannot decode.
    case protocolViolation(String)
    /// A response body was over the client's limit.
    case responseTooLarge(limit: Int)
    /// The client or the stream was closed.
    case closed
    /// A `--url` that is not `http://host:port`.
    case invalidURL(String, reason: String)
    /// A subscription gave up after ``ReconnectPolicy/attemptsMax`` attempts.
    case reconnectGaveUp(attempts: Int, lastError: String)

    public var description: String {
        switch self {
        case .http(let status, let detail): return "HTTP \(status): \(detail)"
        case .connectFailed(let host, let port, let reason): return "cannot connect to \(host):\(port): \(reason)"
        case .connectionLost(let reason): return "connection lost: \(reason)"
        case .protocolViolation(let reason): return "protocol violation: \(reason)"
        case .responseTooLarge(let limit): return "response over the limit of \(limit) bytes"
        case .closed: return "the client is closed"
        case .invalidURL(let url, let reason): return "invalid URL \(url): \(reason)"
        case .reconnectGaveUp(let attempts, let lastError): return "gave up after \(attempts) attempts: \(lastError)"
        }
    }

    /// Whether retrying later may succeed (connection trouble, 429, 503).
    var isTransient: Bool {
        switch self {
        case .connectFailed, .connectionLost: return true
        case .http(let status, _): return status == 429 || status == 502 || status == 503 || status == 504
        case .protocolViolation, .responseTooLarge, .closed, .invalidURL, .reconnectGaveUp: return false
        }
    }
}

/// Reads `detail` from an `application/problem+json` body.
enum ProblemDetail {
    static func detail(from body: ByteBuffer) -> String {
        let parsed = try? body.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        if case .object(let members)? = parsed {
            for (name, value) in members where name == "detail" {
                if case .string(let text) = value { return text }
            }
        }
        return String(buffer: body)
    }
}

/// Byte counters of the TCP connections, read from any thread.
final class WireCounters: Sendable {
    let sent = Atomic<Int>(0)
    let received = Atomic<Int>(0)
}

/// Counts bytes at the TCP level: one relaxed atomic add per read or write.
final class WireCountingHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData
    let counters: WireCounters
    init(counters: WireCounters) { self.counters = counters }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counters.received.add(unwrapInboundIn(data).readableBytes, ordering: .relaxed)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        counters.sent.add(unwrapOutboundIn(data).readableBytes, ordering: .relaxed)
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension WireCountingHandler: Sendable {}
