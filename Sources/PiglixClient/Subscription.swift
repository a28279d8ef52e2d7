import NIOCore
import PiglixWire

/// Where a new subscription starts.
public enum SubscribeStart: Sendable, Hashable {
    /// Only messages published from now on.
    case live
    /// Everything the node retains, then live.
    case earliest
    /// After this message id (an id seen earlier), then live.
    case after(String)
}

extension PiglixClient {
    /// Subscribes to messages whose topic matches any of `patterns`
    /// (`GET /v1/subscribe`).
    ///
    /// The sequence reconnects by itself after the connection is lost or the
    /// server ends the stream (an `end` record, e.g. on shutdown), with
    /// backoff (``PiglixClientSettings/reconnect``), and resumes with
    /// `Last-Event-ID` set to the last message id it yielded, so nothing the
    /// node retains is lost or repeated. A client of several nodes resumes
    /// on the next one (a cluster id is valid on every node). After a node restart, ids of the old
    /// run are unknown to the new one, which then replays all it retains.
    ///
    /// Records are decoded as bytes arrive; the stream stops reading (HTTP/2
    /// flow control) while the consumer is not asking for more.
    ///
    /// - Parameters:
    ///   - patterns: topic patterns such as `sensors.*.temp` or `logs.>`.
    ///   - format: the wire format; binary frames cost least to decode.
    ///   - start: live, earliest, or after a given id.
    ///   - compression: ask for a gzip or deflate stream (sync-flushed per batch).
    ///   - options: extra subscribe parameters (batching, overflow policy).
    public func subscribe(
        patterns: [String], format: StreamFormat = .binary, start: SubscribeStart = .live,
        compression: ContentCoding? = nil, options: SubscribeOptions = .init()
    ) -> Subscription {
        Subscription(
            client: self, patterns: patterns, format: format, start: start, compression: compression, options: options)
    }
}

/// Extra parameters of `GET /v1/subscribe`.
public struct SubscribeOptions: Sendable, Hashable {
    /// `?overflow=`: what the node does when this subscriber falls behind.
    public var overflow: Overflow?
    /// `?batch_bytes=`: most bytes per batch the node sends.
    public var batchBytes: Int?
    /// `?linger_ms=`: how long the node waits to fill a batch.
    public var lingerMs: Int?
    /// `?queue=`: the subscription is a member of this work queue on its one
    /// pattern (docs/patterns.md, "Work queues"): it gets only the messages
    /// the queue assigns it (`DeliveredMessage.queue`, `redelivered`); ack
    /// them with ``PiglixClient/ack(queue:ids:)``. It reconnects without a
    /// resume position: what it held and did not ack goes to another
    /// member, or back to it, redelivered. `overflow` is not sent.
    public var queue: String?

    public enum Overflow: String, Sendable, Hashable {
        case dropOldest = "drop-oldest"
        case disconnect
    }

    public init(overflow: Overflow? = nil, batchBytes: Int? = nil, lingerMs: Int? = nil, queue: String? = nil) {
        self.overflow = overflow
        self.batchBytes = batchBytes
        self.lingerMs = lingerMs
        self.queue = queue
    }
}

/// A subscription: an `AsyncSequence` of delivered records that survives
/// connection losses (see ``PiglixClient/subscribe(patterns:format:start:compression:options:)``).
///
/// Control records are yielded too: `view` at the start of each connection,
/// `gap` when the node dropped messages for this slow subscriber, `heartbeat`
/// on idle streams, and `end` when the node ended the stream; after `end` the
/// sequence reconnects and goes on. It finishes only when the consuming task
/// is cancelled, and throws on a non-transient error (a 4xx such as a bad
/// pattern) or when ``ReconnectPolicy/attemptsMax`` is exhausted.
public struct Subscription: AsyncSequence, Sendable {
    public typealias Element = DeliveredRecord
    public typealias Failure = any Error

    let client: PiglixClient
    let patterns: [String]
    let format: StreamFormat
    let start: SubscribeStart
    let compression: ContentCoding?
    let options: SubscribeOptions

    public func makeAsyncIterator() -> Iterator {
        Iterator(subscription: self)
    }

    /// Not Sendable: one consumer task reads it.
    public struct Iterator: AsyncIteratorProtocol {
        let subscription: Subscription
        private var events: ResponseStream.Events.AsyncIterator?
        private var decoder: RecordDecoder
        private var lastID: String?
        private var failuresInARow = 0
        private var lastError: (any Error)?
        /// The `Last-Event-ID` response header of the current connection.
        public private(set) var newestRetainedID: String?
        /// Connections opened so far (1 after the first).
        public private(set) var connections = 0

        init(subscription: Subscription) {
            self.subscription = subscription
            self.decoder = RecordDecoder(
                format: subscription.format, coding: nil, recordBytesMax: subscription.client.settings.recordBytesMax)
        }

        /// The id of the last message yielded, which a reconnect resumes after.
        public var lastMessageID: String? { lastID }

        public mutating func next() async throws -> DeliveredRecord? {
            while true {
                if let record = try decoder.next() {
                    if case .message(let message) = record { lastID = message.id }
                    return record
                }
                if Task.isCancelled {
                    events = nil
                    return nil
                }
                guard let iterator = events else {
                    try await reconnect()
                    continue
                }
                do {
                    let event = try await iterator.next()
                    switch event {
                    case .body(let bytes)?:
                        try decoder.feed(bytes)
                    case .head?:
                        break
                    case .end?, .failed?, nil:
                        // The node ended the stream: reconnect and resume.
                        events = nil
                        if Task.isCancelled { return nil }
                    }
                } catch is CancellationError {
                    events = nil
                    return nil
                } catch {
                    events = nil
                    lastError = error
                    if Task.isCancelled { return nil }
                }
            }
        }

        /// Opens a subscribe stream, after a backoff delay when the previous
        /// attempts failed; resumes after the last message yielded.
        private mutating func reconnect() async throws {
            let client = subscription.client
            let policy = client.settings.reconnect
            while true {
                if let attemptsMax = policy.attemptsMax, failuresInARow >= attemptsMax {
                    throw PiglixClientError.reconnectGaveUp(attempts: failuresInARow, lastError: "\(lastError.map { "\($0)" } ?? "none")")
                }
                let delay = policy.delay(attempt: failuresInARow)
                if delay > .zero { try await Task.sleep(for: delay) }
                do {
                    try await open()
                    failuresInARow = 0
                    return
                } catch let error as PiglixClientError where error.isTransient {
                    failuresInARow += 1
                    lastError = error
                    // 503 outside the primary component, say: resume on the next node.
                    if case .http = error { client.failover() }
                } catch let error as PiglixClientError {
                    throw error
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    failuresInARow += 1
                    lastError = error
                }
            }
        }

        private mutating func open() async throws {
            var query = "/v1/subscribe?"
            for (index, pattern) in subscription.patterns.enumerated() {
                if index > 0 { query += "&" }
                query += "topic=" + PiglixClient.percentEncoded(pattern)
            }
            let options = subscription.options
            if let queue = options.queue { query += "&queue=" + PiglixClient.percentEncoded(queue) }
            if let overflow = options.overflow, options.queue == nil { query += "&overflow=\(overflow.rawValue)" }
            if let batchBytes = options.batchBytes { query += "&batch_bytes=\(batchBytes)" }
            if let lingerMs = options.lingerMs { query += "&linger_ms=\(lingerMs)" }
            var headers: [(String, String)] = [("accept", subscription.format.contentType)]
            if let coding = subscription.compression { headers.append(("accept-encoding", coding.rawValue)) }
            if options.queue != nil {
                // A queue stream has no resume: unacked messages are redelivered.
            } else if let lastID {
                headers.append(("last-event-id", lastID))
            } else {
                switch subscription.start {
                case .live: break
                case .earliest: headers.append(("last-event-id", "earliest"))
                case .after(let id): headers.append(("last-event-id", id))
                }
            }
            let stream = try await ResponseStream.open(client: subscription.client, method: "GET", path: query, headers: headers)
            let iterator = stream.events.makeAsyncIterator()
            let first: ResponseEvent?
            do {
                first = try await iterator.next()
            } catch let error as PiglixClientError {
                throw error
            } catch {
                throw PiglixClientError.connectionLost(reason: "\(error)")
            }
            guard case .head(let status, let responseHeaders)? = first else {
                throw PiglixClientError.connectionLost(reason: "the subscribe stream ended before its response head")
            }
            guard status == 200 else {
                var body = ByteBuffer()
                while let event = try? await iterator.next() {
                    if case .body(var bytes) = event, body.readableBytes < 65536 { body.writeBuffer(&bytes) }
                }
                throw PiglixClientError.http(status: status, detail: ProblemDetail.detail(from: body))
            }
            var coding: ContentCoding? = nil
            if let encoding = responseHeaders.first(name: "content-encoding") {
                guard case .success(let parsed) = ContentCoding.parse(contentEncoding: encoding) else {
                    throw PiglixClientError.protocolViolation("unknown Content-Encoding \(encoding)")
                }
                coding = parsed
            }
            newestRetainedID = responseHeaders.first(name: "last-event-id")
            decoder = RecordDecoder(format: subscription.format, coding: coding, recordBytesMax: subscription.client.settings.recordBytesMax)
            events = iterator
            connections += 1
        }
    }
}

/// Turns the bytes of a subscribe stream into records, in any format, after
/// inflating them if the stream is compressed.
struct RecordDecoder {
    let format: StreamFormat
    private var frames: FrameDecoder
    private var lines: LineSplitter
    private let inflater: BoundedDecompressor?
    private var topics = TopicReuse()

    init(format: StreamFormat, coding: ContentCoding?, recordBytesMax: Int) {
        self.format = format
        self.frames = FrameDecoder(bodyBytesMax: recordBytesMax)
        self.lines = LineSplitter(lineBytesMax: recordBytesMax)
        // Records are bounded one by one, so the stream's total needs no bound.
        self.inflater = coding.flatMap { try? BoundedDecompressor($0, outputBytesMax: .max) }
    }

    mutating func feed(_ bytes: ByteBuffer) throws {
        if let inflater {
            var chunks: [ByteBuffer] = []
            try inflater.decompress(bytes) { chunks.append($0) }
            for chunk in chunks { append(chunk) }
        } else {
            append(bytes)
        }
    }

    private mutating func append(_ bytes: ByteBuffer) {
        switch format {
        case .binary: frames.append(bytes)
        case .ndjson, .sse: lines.append(bytes)
        }
    }

    mutating func next() throws -> DeliveredRecord? {
        switch format {
        case .binary:
            guard let frame = try frames.next() else { return nil }
            return try DeliveredRecord.decode(frame: frame, topics: &topics)
        case .ndjson:
            while let item = lines.next() {
                guard case .line(let line) = item else {
                    throw PiglixClientError.protocolViolation("a record line is over \(lines.lineBytesMax) bytes")
                }
                return try DeliveredRecord.decode(json: line)
            }
            return nil
        case .sse:
            // The node writes each event's JSON on one `data:` line; `event:`
            // and `id:` repeat what the JSON says. Comments and other fields are skipped.
            while let item = lines.next() {
                guard case .line(var line) = item else {
                    throw PiglixClientError.protocolViolation("an event line is over \(lines.lineBytesMax) bytes")
                }
                guard line.readableBytes >= 5, line.readString(length: 5) == "data:" else { continue }
                if line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: " ") { line.moveReaderIndex(forwardBy: 1) }
                return try DeliveredRecord.decode(json: line)
            }
            return nil
        }
    }
}
