import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import PiglixAuth
import PiglixBroker
import PiglixTopics
import PiglixWire

/// `POST /v1/topics/{topic}` (one message) and `POST /v1/publish` (batch
/// and streaming publish with one ack per record).
struct PublishRoute: Sendable {
    let broker: Broker
    let settings: ServerSettings

    // MARK: Single publish

    func publishOne(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        guard let rawTopic = context.parameters.get("topic") else { throw Problem(.badRequest, "missing topic") }
        let topic = RequestParsing.percentDecoded(Substring(rawTopic))
        if let refusal = context.access?.publishRefusal(topic, limits: settings.broker.topicLimits) {
            throw AuthMiddleware.problem(.forbidden(refusal))
        }
        let delivery = try RequestParsing.deliveryLevel(request)
        let (producer, sequence) = try RequestParsing.idempotence(request)
        let coding = try RequestParsing.contentCoding(request)
        let limit = settings.broker.messageBytesMax
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), coding == nil, length > limit {
            throw Problem(.contentTooLarge, "message of \(length) bytes is over the limit of \(limit) bytes")
        }
        // Check the topic before reading the body, so a bad topic costs no upload.
        do { _ = try broker.check(topic: topic, payloadBytes: 0) } catch { throw Self.problem(error) }

        var request = request
        var payload: ByteBuffer
        do {
            payload = try await request.collectBody(upTo: coding == nil ? limit : settings.batchRequestBytesMax)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "message is over the limit of \(limit) bytes")
        } catch is NIOTooManyBytesError {
            throw Problem(.contentTooLarge, "message is over the limit of \(limit) bytes")
        } catch let error as HTTPParserError {
            // A malformed chunk size or framing: the client's fault, not ours.
            throw Problem(.badRequest, "malformed request body: \(error)")
        }
        if let coding { payload = try Self.decompress(payload, coding: coding, limit: limit, what: "message") }

        var headers: [MessageHeader] = []
        for field in request.headers where field.name.canonicalName.hasPrefix(userHeaderPrefix) {
            headers.append(MessageHeader(name: String(field.name.canonicalName.dropFirst(userHeaderPrefix.count)), value: field.value))
        }
        let record = PublishRecord(
            topic: topic, payload: payload, delivery: delivery, headers: headers, producer: producer, sequence: sequence)
        let receipt: PublishReceipt
        switch await broker.publish([record], session: 0)[0] {
        case .success(let r): receipt = r
        case .failure(let error): throw Self.problem(error)
        }

        var body = ByteBuffer()
        AckCodec.writeOK(id: receipt.id, delivery: receipt.delivery, status: receipt.status, binary: false, into: &body)
        return Response(
            status: HTTPResponse.Status(code: receipt.status),
            headers: [.contentType: "application/json", .piglixMessageID: receipt.id.description, .contentLength: String(body.readableBytes)],
            body: .init(byteBuffer: body))
    }

    // MARK: Batch and streaming publish

    func publishMany(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        let access = context.access
        let coding = try RequestParsing.contentCoding(request)
        let binary = request.headers[.contentType].map { $0.lowercased().hasPrefix(binaryFramesMediaType) } ?? false
        let ackType = binary ? binaryFramesMediaType : "application/x-ndjson"
        if broker.isShuttingDown {
            throw Problem(.serviceUnavailable, "the broker is shutting down", headers: [.retryAfter: "1"])
        }

        if request.headers[.contentLength] != nil {
            // A batch: read it whole (bounded), so a bomb or an oversize body
            // is a 413 before anything is published.
            var request = request
            var body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: settings.batchRequestBytesMax)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw Problem(.contentTooLarge, "batch body is over the limit of \(settings.batchRequestBytesMax) bytes; stream it without Content-Length instead")
            } catch is NIOTooManyBytesError {
                throw Problem(.contentTooLarge, "batch body is over the limit of \(settings.batchRequestBytesMax) bytes; stream it without Content-Length instead")
            }
            if let coding {
                body = try Self.decompress(body, coding: coding, limit: settings.decompressedBytesMax, what: "batch body")
            }
            let broker = self.broker
            let settings = self.settings
            return Response(
                status: .ok, headers: [.contentType: ackType],
                body: ResponseBody { [body] writer in
                    try await Self.publishBatch(body, broker: broker, settings: settings, binary: binary, access: access, writer: &writer)
                    try await writer.finish(nil)
                })
        }

        // A stream: acks go back while the body is still being read.
        let broker = self.broker
        let settings = self.settings
        return Response(
            status: .ok, headers: [.contentType: ackType, .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                try await Self.streamPipelined(
                    request, broker: broker, settings: settings, coding: coding, binary: binary, access: access, writer: &writer)
                try await writer.finish(nil)
            })
    }

    /// A batch body, read whole and bounded, is decoded and published a
    /// slice at a time and each slice's acks are written (under the
    /// response's flow control) before the next is decoded, so neither the
    /// decoded records nor the acks of a large batch are ever held whole.
    static func publishBatch(
        _ body: ByteBuffer, broker: Broker, settings: ServerSettings, binary: Bool, access: Access?, writer: inout any ResponseBodyWriter
    ) async throws {
        var body = body
        var session = PublishSession(broker: broker, settings: settings, binary: binary, access: access)
        while !session.fatal, body.readableBytes > 0 {
            session.consume(body.readSlice(length: min(batchSliceBytes, body.readableBytes))!)
            var acks = ByteBuffer()
            await session.drain(into: &acks)
            if acks.readableBytes > 0 { try await writer.write(acks) }
        }
        session.finish()
        var acks = ByteBuffer()
        await session.drain(into: &acks)
        if acks.readableBytes > 0 { try await writer.write(acks) }
    }

    static let batchSliceBytes = 64 * 1024

    /// The one publish path of a stream. In a cluster a batch's level is
    /// reached a round trip or more later, so the body is read on while
    /// earlier batches are in flight (up to `publishInFlightRecordsMax`
    /// records or `publishInFlightBytesMax` bytes): a child task reads and
    /// publishes, this one writes the acks in input order as their batches
    /// complete. On a single node a batch completes at once, in `submit`.
    static func streamPipelined(
        _ request: Request, broker: Broker, settings: ServerSettings, coding: ContentCoding?, binary: Bool, access: Access?,
        writer: inout any ResponseBodyWriter
    ) async throws {
        let pipeline = AckPipeline(recordsMax: settings.publishInFlightRecordsMax, bytesMax: settings.publishInFlightBytesMax)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { pipeline.endReading() }
                var session = PublishSession(broker: broker, settings: settings, binary: binary, access: access)
                let decompressor = try coding.map { try BoundedDecompressor($0, outputBytesMax: .max) }
                var chunksSinceYield = 0
                do {
                    for try await chunk in request.body {
                        try session.consume(chunk, through: decompressor)
                        await session.submit(to: pipeline)
                        if session.fatal { return }
                        if pipeline.isFull, await !pipeline.waitForRoom() { return }
                        // While body bytes keep arriving this loop does not
                        // suspend; with one free thread the writer would wait
                        // for the body to pause before sending acks that are
                        // ready (a single node completes batches at once).
                        // Every 8th chunk at most: a yield per chunk cost ~9 %
                        // of the node's CPU per message in `piglix bench 1to1`.
                        chunksSinceYield += 1
                        if chunksSinceYield >= 8 && pipeline.hasAcksToWrite {
                            chunksSinceYield = 0
                            await Task.yield()
                        }
                    }
                    try decompressor?.finish()
                    session.finish()
                    await session.submit(to: pipeline)
                } catch let error as CorruptCompressedData {
                    await session.submit(to: pipeline)
                    var acks = ByteBuffer()
                    AckCodec.writeError(status: 400, error: error.description, binary: binary, into: &acks)
                    pipeline.complete(pipeline.reserve(records: 1, bytes: 0), acks: acks)
                }
            }
            do {
                while let acks = await pipeline.next() { try await writer.write(acks) }
            } catch {
                pipeline.abort()
                throw error
            }
            try await group.waitForAll()
        }
    }

    static func decompress(_ body: ByteBuffer, coding: ContentCoding, limit: Int, what: String) throws -> ByteBuffer {
        do {
            let decompressor = try BoundedDecompressor(coding, outputBytesMax: limit)
            var output = ByteBuffer()
            try decompressor.decompress(body) { chunk in
                var chunk = chunk
                output.writeBuffer(&chunk)
            }
            try decompressor.finish()
            return output
        } catch let error as DecompressedTooLarge {
            throw Problem(.contentTooLarge, "\(what) decompresses to over the limit of \(error.limit) bytes")
        } catch let error as CorruptCompressedData {
            throw Problem(.badRequest, error.description)
        }
    }

    static func problem(_ error: PublishError) -> Problem {
        var headers: HTTPFields = [:]
        if error.status == 503 { headers[.retryAfter] = "1" }
        return Problem(Problem.status(error.status), error.description, headers: headers)
    }
}

/// Decodes records from a publish body as bytes arrive and publishes them,
/// writing one ack per record in input order. Records decoded from one chunk
/// are published as one batch (`drain`); memory is bounded by one chunk.
struct PublishSession {
    let broker: Broker
    let binary: Bool
    /// The publisher session: FIFO holds per session (docs/virtual-synchrony.md, "Delivery rule, ordering levels, stability").
    let session = UInt64.random(in: 1...UInt64.max)
    /// Decoded and not yet published, in input order, with the errors of
    /// records that could not be decoded in their place.
    private var items: [Item] = []
    enum Item {
        case record(PublishRecord)
        case error(status: Int, message: String)
    }
    var lines: LineSplitter
    var frames: FrameDecoder
    let headerLimits: HeaderLimits
    /// The publisher's grants; nil: no token checks.
    let access: Access?
    let topicLimits: TopicLimits
    let messageBytesMax: Int
    /// After this many refused records the session ends (see `refuse`).
    let errorAcksMax: Int
    /// Records decoded so far, and how many of them were refused.
    private(set) var recordsRead = 0
    private(set) var recordsRefused = 0
    /// The topic of the last record that passed `admit`, so a run of records
    /// on one topic is validated once.
    private var lastValidTopic: String?
    /// Nothing more is read: a binary stream lost its framing, or the error
    /// ack budget is spent.
    private(set) var fatal = false

    init(broker: Broker, settings: ServerSettings, binary: Bool, access: Access? = nil) {
        self.broker = broker
        self.binary = binary
        self.access = access
        self.topicLimits = settings.broker.topicLimits
        self.lines = LineSplitter(lineBytesMax: settings.recordBytesMax)
        self.frames = FrameDecoder(bodyBytesMax: settings.recordBytesMax)
        self.headerLimits = settings.broker.headerLimits
        self.messageBytesMax = settings.broker.messageBytesMax
        self.errorAcksMax = settings.errorAcksMax
    }

    mutating func consume(_ bytes: ByteBuffer) {
        guard !fatal else { return }
        if binary {
            frames.append(bytes)
            while !fatal {
                do {
                    guard let frame = try frames.next() else { return }
                    guard frame.type == .publish else {
                        refuse(status: 400, message: "expected a publish frame, got \(frame.type)")
                        continue
                    }
                    do {
                        admit(try PublishRecord.decodeFrame(frame.body, headerLimits: headerLimits))
                    } catch {
                        refuse(status: error.status, message: error.reason)
                    }
                } catch {
                    let status = if case .tooLarge = error { 413 } else { 400 }
                    refuse(status: status, message: error.description + "; the stream ends here", last: true)
                    return
                }
            }
        } else {
            lines.append(bytes)
            while !fatal, let item = lines.next() { handle(item) }
        }
    }

    /// Decodes a body chunk, decompressing it first when the body is encoded.
    /// Once the session ends, the rest of the chunk is not even inflated.
    mutating func consume(_ chunk: ByteBuffer, through decompressor: BoundedDecompressor?) throws {
        guard let decompressor else { return consume(chunk) }
        do {
            try decompressor.decompress(chunk) { output in
                consume(output)
                if fatal { throw SessionEnded() }
            }
        } catch is SessionEnded {}
    }

    private struct SessionEnded: Error {}

    mutating func finish() {
        guard !fatal else { return }
        if binary {
            if frames.bufferedBytes > 0 { refuse(status: 400, message: "the body ends inside a frame") }
        } else if let item = lines.finish() {
            handle(item)
        }
    }

    private mutating func handle(_ item: LineSplitter.Item) {
        switch item {
        case .line(let line):
            do {
                admit(try PublishRecord.decodeJSON(line, headerLimits: headerLimits))
            } catch {
                refuse(status: error.status, message: error.reason)
            }
        case .tooLong(let bytes):
            refuse(status: 413, message: "record of \(bytes) bytes is over the limit of \(lines.lineBytesMax) bytes")
        }
    }

    /// Takes a decoded record, refusing it here if the broker would (topic,
    /// size): so every record refused for what it is counts against the
    /// budget before anything after it is published.
    private mutating func admit(_ record: PublishRecord) {
        if record.topic != lastValidTopic || record.payload.readableBytes > messageBytesMax {
            do {
                _ = try broker.check(topic: record.topic, payloadBytes: record.payload.readableBytes)
            } catch {
                return refuse(status: error.status, message: error.description)
            }
            lastValidTopic = record.topic
        }
        if let refusal = access?.publishRefusal(record.topic, limits: topicLimits) {
            return refuse(status: 403, message: refusal)
        }
        recordsRead += 1
        items.append(.record(record))
    }

    /// An error ack in the record's place. The `errorAcksMax`th ends the
    /// session with one more error ack saying so (docs/protocol.md): junk
    /// input costs at most that many acks, however long the body.
    private mutating func refuse(status: Int, message: String, last: Bool = false) {
        recordsRead += 1
        recordsRefused += 1
        items.append(.error(status: status, message: message))
        if last {
            fatal = true
        } else if recordsRefused >= errorAcksMax {
            items.append(.error(status: 400, message: Self.budgetSpent(refused: recordsRefused, read: recordsRead)))
            fatal = true
        }
    }

    static func budgetSpent(refused: Int, read: Int) -> String {
        "too many bad records: \(refused) of the \(read) records read were refused, the most one request may have; "
            + "the rest of the body is ignored and nothing in it was published"
    }

    /// Publishes what was decoded, as one batch per run of records, and
    /// writes the acks in input order.
    mutating func drain(into acks: inout ByteBuffer) async {
        for run in takeRuns() {
            switch run {
            case .records(let records, _):
                Self.writeAcks(await broker.publish(records, session: session), binary: binary, into: &acks)
            case .error(let status, let message):
                AckCodec.writeError(status: status, error: message, binary: binary, into: &acks)
            }
        }
    }

    /// Publishes what was decoded without waiting for it: each run of
    /// records is one batch with its own slot in `pipeline`, filled when the
    /// batch reaches its levels; a record that could not be decoded gets its
    /// error ack in its place. On a single node a batch completes here, and
    /// one that reaches many subscribers yields between its slices.
    mutating func submit(to pipeline: AckPipeline) async {
        let binary = self.binary
        for run in takeRuns() {
            switch run {
            case .records(let records, let bytes):
                let slot = pipeline.reserve(records: records.count, bytes: bytes)
                if !broker.isClustered {
                    var acks = ByteBuffer()
                    Self.writeAcks(await broker.publish(records, session: session), binary: binary, into: &acks)
                    pipeline.complete(slot, acks: acks)
                    continue
                }
                broker.publish(records, session: session) { results in
                    var acks = ByteBuffer()
                    Self.writeAcks(results, binary: binary, into: &acks)
                    pipeline.complete(slot, acks: acks)
                }
            case .error(let status, let message):
                var acks = ByteBuffer()
                AckCodec.writeError(status: status, error: message, binary: binary, into: &acks)
                // Counted like a record, so error acks too wait for the writer.
                pipeline.complete(pipeline.reserve(records: 1, bytes: 0), acks: acks)
            }
        }
    }

    private enum Run {
        case records([PublishRecord], payloadBytes: Int)
        case error(status: Int, message: String)
    }

    /// Takes what was decoded, in input order: runs of records (one batch
    /// each) between the errors of records that could not be decoded.
    private mutating func takeRuns() -> [Run] {
        guard !items.isEmpty else { return [] }
        let pending = items
        items.removeAll(keepingCapacity: true)
        var runs: [Run] = []
        var records: [PublishRecord] = []
        var bytes = 0
        for item in pending {
            switch item {
            case .record(let record):
                records.append(record)
                bytes += record.payload.readableBytes
            case .error(let status, let message):
                if !records.isEmpty { runs.append(.records(records, payloadBytes: bytes)) }
                records = []
                bytes = 0
                runs.append(.error(status: status, message: message))
            }
        }
        if !records.isEmpty { runs.append(.records(records, payloadBytes: bytes)) }
        return runs
    }

    static func writeAcks(_ results: [Result<PublishReceipt, PublishError>], binary: Bool, into acks: inout ByteBuffer) {
        for result in results {
            switch result {
            case .success(let receipt):
                AckCodec.writeOK(id: receipt.id, delivery: receipt.delivery, status: receipt.status, binary: binary, into: &acks)
            case .failure(let error):
                AckCodec.writeError(status: error.status, error: error.description, binary: binary, into: &acks)
            }
        }
    }
}
