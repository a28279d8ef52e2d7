import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PiglixAuth
import PiglixBroker
import PiglixTopics
import PiglixWire

/// `GET /v1/subscribe?topic=P[&topic=P2…]`: a long-lived stream of the
/// messages matching any pattern, in batches, optionally compressed.
/// With `&queue=NAME` (one pattern), a work queue member's stream: only the
/// messages the queue assigns it (docs/patterns.md, "Work queues").
struct SubscribeRoute: Sendable {
    let broker: Broker
    let settings: ServerSettings
    let compression: CompressionBudget

    func handle(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let names = query.getAll("topic").map { String($0) }
        let patterns: [TopicPattern]
        do { patterns = try broker.parsePatterns(names) } catch { throw Problem(Problem.status(error.status), error.description) }
        try context.access?.checkSubscribe(patterns)
        let format = try RequestParsing.streamFormat(request)

        let overflow: OverflowPolicy
        if let text = query.get("overflow") {
            guard let policy = OverflowPolicy(rawValue: text) else {
                throw Problem(.badRequest, "overflow=\(text) is not one of drop-oldest, disconnect")
            }
            overflow = policy
        } else {
            overflow = settings.broker.defaultOverflow
        }
        let batchBytes = try RequestParsing.intParameter(
            request, "batch_bytes", default: settings.batchBytesDefault, range: settings.batchBytesMin...settings.batchBytesMax)
        let lingerMs = try RequestParsing.intParameter(
            request, "linger_ms", default: Int(settings.lingerDefault.milliseconds),
            range: 0...Int(settings.lingerMax.milliseconds))
        let start = try Self.startPosition(request)
        let coding = request.headers[.acceptEncoding].flatMap { ContentCoding.negotiate(acceptEncoding: $0) }
        // Before the subscription opens, so a refusal costs nothing.
        var reservation: CompressionReservation?
        if coding != nil {
            guard let granted = compression.reserve() else {
                throw Problem(
                    .tooManyRequests,
                    "the node's memory for compressed streams (--compression-memory \(compression.bytesMax) bytes, "
                        + "\(compression.streamsMax) streams) is in use; subscribe without Accept-Encoding, or retry later",
                    headers: [.retryAfter: "1"])
            }
            reservation = granted
        }

        // `queue=NAME`: a work queue member (docs/patterns.md, "Work queues").
        let queueName = query.get("queue").map { String($0) }
        if let queueName {
            do { try Broker.validateQueueName(queueName) } catch { throw Problem(.badRequest, "queue=\(queueName.prefix(140)): \(error.description)") }
            if patterns.count != 1 {
                throw Problem(.badRequest, "a work queue stream takes exactly one topic pattern (topic=P&queue=NAME), not \(patterns.count)")
            }
            if start != .live {
                throw Problem(
                    .badRequest,
                    "a work queue stream has no resume position (Last-Event-ID, lastEventID): messages not acked are redelivered instead")
            }
            if query.get("overflow") != nil {
                throw Problem(.badRequest, "a work queue stream takes no overflow policy: past its bounds it ends and its messages go to another member")
            }
        }

        let subscription: Subscription
        do {
            if let queueName {
                subscription = try await broker.openQueue(name: queueName, pattern: patterns[0], overflow: overflow)
            } else {
                subscription = try await broker.open(patterns: patterns, options: SubscriptionOptions(overflow: overflow, start: start))
            }
        } catch {
            var headers: HTTPFields = [:]
            if error.status == 429 || error.status == 503 { headers[.retryAfter] = "1" }
            throw Problem(Problem.status(error.status), error.description, headers: headers)
        }

        // The writer may be parked waiting for messages: end it when the
        // client resets the stream or drops the connection.
        // A stream lasts as long as its token: at expiry it ends with an
        // `end` record saying so.
        let expiry = context.access?.secondsUntilExpiry.map { seconds in
            Task {
                try await Task.sleep(for: .milliseconds(Int64(max(seconds, 0) * 1000)))
                subscription.end(reason: "the token expired; subscribe again with a fresh token and Last-Event-ID to resume")
            }
        }
        context.channel.closeFuture.whenComplete { _ in
            expiry?.cancel()
            subscription.cancel(reason: "client went away")
        }

        var headers: HTTPFields = [
            .contentType: format == .sse ? "text/event-stream; charset=utf-8" : format.contentType,
            .cacheControl: "no-cache",
            .xAccelBuffering: "no",
            .vary: "Accept, Accept-Encoding",
        ]
        if let coding { headers[.contentEncoding] = coding.rawValue }
        if let newest = subscription.newestRetained { headers[.lastEventID] = newest.description }

        let views = subscription.initialViews()
        let writerSettings = StreamWriter.Settings(
            format: format, coding: coding, batchBytes: batchBytes, linger: .milliseconds(lingerMs))
        let logger = context.logger
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { [reservation] writer in
                // After run returns its compressor is gone (deflateEnd), so the memory is free.
                defer { reservation?.release() }
                try await StreamWriter(subscription: subscription, settings: writerSettings, logger: logger)
                    .run(initial: views, writer: &writer)
            })
    }

    /// `Last-Event-ID` header, else `lastEventID` query parameter: an id this
    /// broker (or, in a cluster, any node) issued, or `earliest`.
    static func startPosition(_ request: Request) throws -> StartPosition {
        let query = request.uri.queryParameters.get("lastEventID").map { String($0) }
        guard let text = request.headers[.lastEventID] ?? query else { return .live }
        let value = text.trimmingCharacters(in: " \t")
        if value.isEmpty { return .live }
        if value == "earliest" { return .earliest }
        guard let id = MessageID(value) else {
            throw Problem(.badRequest, "Last-Event-ID \(value) is neither earliest nor a message id this broker issued (like 5f3a09c1-1042, or v7.120.0.33 in a cluster)")
        }
        return .after(id)
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Drains one subscription into one response stream: a batch of records per
/// write, compressed by one compressor per stream with a sync flush per batch.
struct StreamWriter {
    struct Settings: Sendable {
        var format: StreamFormat
        var coding: ContentCoding?
        var batchBytes: Int
        var linger: Duration
    }

    let subscription: Subscription
    let settings: Settings
    let logger: Logger

    func run(initial: [ControlRecord], writer: inout any ResponseBodyWriter) async throws {
        let compressor = try settings.coding.map {
            try StreamCompressor($0, windowBits: CompressionBudget.windowBits, memoryLevel: CompressionBudget.memoryLevel)
        }
        defer { subscription.cancel(reason: "stream closed") }
        // Sized by what is written, not by `batchBytes`: an idle stream that
        // asked for 1 MiB batches holds a small buffer (see `send`).
        var out = ByteBuffer()
        out.reserveCapacity(1024)
        for record in initial { RecordEncoder.writeControl(record, format: settings.format, into: &out) }
        try await send(&out, compressor: compressor, writer: &writer)
        while true {
            let batch = await subscription.next(maxBytes: settings.batchBytes, linger: settings.linger)
            if batch.lost > 0 {
                RecordEncoder.writeControl(.gap(lost: batch.lost, reason: "slow consumer"), format: settings.format, into: &out)
            }
            for message in batch.messages {
                if let queue = message.queue {
                    RecordEncoder.writeQueueMessage(
                        format: settings.format, queue: queue, redelivered: message.redelivered, topic: message.topic, id: message.id,
                        delivery: message.delivery, headers: message.headers, payload: message.payload,
                        payloadIsText: message.payloadIsText, into: &out)
                    continue
                }
                RecordEncoder.writeMessage(
                    format: settings.format, topic: message.topic, id: message.id, delivery: message.delivery,
                    headers: message.headers, payload: message.payload, payloadIsText: message.payloadIsText, into: &out)
            }
            for view in batch.views { RecordEncoder.writeControl(view, format: settings.format, into: &out) }
            if batch.heartbeat { RecordEncoder.writeControl(.heartbeat, format: settings.format, into: &out) }
            if let reason = batch.end {
                RecordEncoder.writeControl(.end(reason: reason), format: settings.format, into: &out)
                try await send(&out, compressor: compressor, writer: &writer)
                if let compressor { try await writer.write(compressor.finish()) }
                try await writer.finish(nil)
                return
            }
            if out.readableBytes > 0 { try await send(&out, compressor: compressor, writer: &writer) }
            if batch.more { await Task.yield() }
        }
    }

    private func send(_ out: inout ByteBuffer, compressor: StreamCompressor?, writer: inout any ResponseBodyWriter) async throws {
        guard out.readableBytes > 0 else { return }
        let batch = out
        // A fresh buffer per batch, as large as this one was (bounded by
        // the batch size): the written one is owned by the channel until
        // flushed, and a buffer kept at its largest would pin a large
        // batch's memory for the life of the stream.
        out = ByteBuffer()
        out.reserveCapacity(min(settings.batchBytes + 4096, max(batch.readableBytes, 1024)))
        try await writer.write(compressor.map { try $0.compress(batch) } ?? batch)
    }
}
