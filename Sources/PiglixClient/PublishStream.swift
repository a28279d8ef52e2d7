import PiglixTopics
import NIOCore
import NIOHTTP2
import PiglixWire
import Synchronization

extension PiglixClient {
    /// Opens a streaming publisher: one `POST /v1/publish` stream without
    /// Content-Length, carrying binary publish frames, on which the server
    /// answers one ack per record, in order, while the request is still open.
    ///
    /// - Parameters:
    ///   - inFlightMax: most records sent or buffered but not yet acked;
    ///     ``PublishStream/send(_:)`` waits while this many are outstanding.
    ///   - onAck: called for every ack, in send order, on the connection's
    ///     event loop: keep it short and non-blocking. Without it, acks are
    ///     only counted (``PublishStream/counts``), which skips decoding
    ///     their ids.
    public func publishStream(
        inFlightMax: Int = 1024, onAck: (@Sendable (PublishAck) -> Void)? = nil
    ) async throws -> PublishStream {
        precondition(inFlightMax > 0, "inFlightMax must be positive, not \(inFlightMax)")
        let recordBytesMax = settings.recordBytesMax
        return try await openStream(
            method: "POST", path: "/v1/publish",
            headers: [("content-type", binaryFramesMediaType), ("accept", binaryFramesMediaType)],
            body: nil, endRequest: false
        ) { channel, _ in
            let stream = PublishStream(channel: channel, inFlightMax: inFlightMax, onAck: onAck)
            return (AckReader(stream: stream, frameBytesMax: recordBytesMax), stream)
        }
    }
}

/// A streaming publisher (see ``PiglixClient/publishStream(inFlightMax:onAck:)``).
///
/// `send` encodes the record into a pending buffer under a short lock and
/// returns; the event loop takes the whole buffer in one write, so records sent
/// while a write is under way go out together in one DATA frame run (about
/// Nagle's algorithm, without the delay: a lone record leaves at once).
public final class PublishStream: Sendable {
    private let channel: any Channel
    public let inFlightMax: Int
    private let onAck: (@Sendable (PublishAck) -> Void)?
    private let state: Mutex<State>

    private struct State {
        var pending = ByteBuffer()
        var pendingCount = 0
        /// Written to the stream, not yet acked.
        var inFlight = 0
        var flushScheduled = false
        var ended = false
        var failure: PiglixClientError?
        var acked = 0
        var rejected = 0
        var sent = 0
        var capacityWaiters: [CheckedContinuation<Void, any Error>] = []
        var drainWaiters: [CheckedContinuation<Void, any Error>] = []
        var responseEnded = false
    }

    init(channel: any Channel, inFlightMax: Int, onAck: (@Sendable (PublishAck) -> Void)?) {
        self.channel = channel
        self.inFlightMax = inFlightMax
        self.onAck = onAck
        self.state = Mutex(State())
    }

    /// Counts so far: records sent, acked ok, acked with an error.
    public var counts: (sent: Int, acked: Int, rejected: Int) {
        state.withLock { ($0.sent, $0.acked, $0.rejected) }
    }

    private enum SendOutcome {
        case done
        case scheduleFlush
        case wait
        case fail(PiglixClientError)
    }

    /// Sends one record; waits while ``inFlightMax`` records are unacked.
    /// - Throws: ``PiglixClientError`` once the stream failed or was finished.
    public func send(_ record: PublishRecord) async throws {
        while true {
            let outcome = state.withLock { state -> SendOutcome in
                if let failure = state.failure { return .fail(failure) }
                if state.ended { return .fail(.closed) }
                if state.inFlight + state.pendingCount >= inFlightMax { return .wait }
                record.encodeFrame(into: &state.pending)
                state.pendingCount += 1
                state.sent += 1
                if state.flushScheduled { return .done }
                state.flushScheduled = true
                return .scheduleFlush
            }
            switch outcome {
            case .done: return
            case .scheduleFlush:
                scheduleFlush()
                return
            case .fail(let error): throw error
            case .wait:
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let ready = state.withLock { state -> Result<Void, any Error>? in
                        if let failure = state.failure { return .failure(failure) }
                        if state.inFlight + state.pendingCount < inFlightMax { return .success(()) }
                        state.capacityWaiters.append(continuation)
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            }
        }
    }

    /// Sends `payload` to `topic`; see ``send(_:)``.
    public func send(topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = []) async throws {
        try await send(PublishRecord(topic: topic, payload: payload, delivery: delivery, headers: headers))
    }

    private func scheduleFlush() {
        let channel = self.channel
        channel.eventLoop.execute { self.flushNow() }
    }

    /// On the event loop: writes everything pending as one buffer.
    private func flushNow() {
        let batch = state.withLock { state -> ByteBuffer? in
            state.flushScheduled = false
            guard state.pendingCount > 0, state.failure == nil else { return nil }
            state.inFlight += state.pendingCount
            state.pendingCount = 0
            let batch = state.pending
            state.pending = ByteBuffer()
            state.pending.reserveCapacity(min(batch.readableBytes * 2, 1 << 20))
            return batch
        }
        guard let batch else { return }
        channel.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(batch))), promise: nil)
    }

    /// Ends the request body and waits until every record is acked and the
    /// server ended its response.
    /// - Returns: how many records were acked ok and with an error.
    @discardableResult
    public func finish() async throws -> (acked: Int, rejected: Int) {
        let alreadyEnded = state.withLock { state -> Bool in
            let was = state.ended
            state.ended = true
            return was
        }
        if !alreadyEnded {
            channel.eventLoop.execute {
                self.flushNow()
                self.channel.writeAndFlush(
                    HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)), promise: nil)
            }
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let ready = state.withLock { state -> Result<Void, any Error>? in
                if state.responseEnded && state.inFlight == 0 && state.pendingCount == 0 { return .success(()) }
                if let failure = state.failure { return .failure(failure) }
                state.drainWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
        return state.withLock { ($0.acked, $0.rejected) }
    }

    /// Resets the stream at once; unacked records may or may not be published.
    public func cancel() {
        fail(.closed)
        channel.close(promise: nil)
    }

    // MARK: From the ack reader, on the event loop

    /// Whether acks are handed to a callback, or only counted.
    fileprivate var wantsAcks: Bool { onAck != nil }

    fileprivate func acked(_ acks: [PublishAck]) {
        if let onAck { for ack in acks { onAck(ack) } }
        var okCount = 0
        for ack in acks where ack.ok { okCount += 1 }
        acked(ok: okCount, rejected: acks.count - okCount)
    }

    fileprivate func acked(ok okCount: Int, rejected rejectedCount: Int) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.inFlight -= okCount + rejectedCount
            state.acked += okCount
            state.rejected += rejectedCount
            guard !state.capacityWaiters.isEmpty, state.inFlight + state.pendingCount < inFlightMax else { return [] }
            let waiters = state.capacityWaiters
            state.capacityWaiters = []
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    fileprivate func responseEnded() {
        let (drain, capacity, failure) = state.withLock { state in
            state.responseEnded = true
            var failure: PiglixClientError? = nil
            if state.inFlight > 0 || state.pendingCount > 0 {
                failure = .protocolViolation("the server ended the publish stream with \(state.inFlight + state.pendingCount) records unacked")
                state.failure = state.failure ?? failure
            } else if !state.ended {
                failure = .connectionLost(reason: "the server ended the publish stream")
                state.failure = state.failure ?? failure
            }
            let drain = state.drainWaiters
            let capacity = state.capacityWaiters
            state.drainWaiters = []
            state.capacityWaiters = []
            return (drain, capacity, failure)
        }
        for waiter in drain {
            if let failure { waiter.resume(throwing: failure) } else { waiter.resume() }
        }
        for waiter in capacity { waiter.resume(throwing: failure ?? .closed) }
    }

    fileprivate func fail(_ error: PiglixClientError) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            if state.failure == nil { state.failure = error }
            let waiters = state.capacityWaiters + state.drainWaiters
            state.capacityWaiters = []
            state.drainWaiters = []
            return waiters
        }
        for waiter in waiters { waiter.resume(throwing: state.withLock { $0.failure } ?? error) }
    }
}

/// Decodes the ack stream of a publisher on its event loop. A non-200 answer
/// (the server refused the stream) fails the publisher with the problem detail.
final class AckReader: ResponseSink {
    private let stream: PublishStream
    private var frames: FrameDecoder
    private var status = 0
    private var problem = ByteBuffer()
    private var acks: [PublishAck] = []

    init(stream: PublishStream, frameBytesMax: Int) {
        self.stream = stream
        self.frames = FrameDecoder(bodyBytesMax: frameBytesMax)
    }

    func receive(_ event: ResponseEvent) -> Bool {
        switch event {
        case .head(let status, _):
            self.status = status
        case .body(var bytes):
            guard status == 200 else {
                if problem.readableBytes < 65536 { problem.writeBuffer(&bytes) }
                return true
            }
            frames.append(bytes)
            // Without a callback only the status matters: no id strings are made.
            let wantsAcks = stream.wantsAcks
            var okCount = 0
            var rejectedCount = 0
            do {
                while let frame = try frames.next() {
                    guard frame.type == .ack else {
                        throw FrameError.malformed("expected an ack frame, got \(frame.type)")
                    }
                    if wantsAcks {
                        acks.append(try AckCodec.decodeFrame(frame.body))
                    } else if try AckCodec.decodeFrameStatus(frame.body) < 300 {
                        okCount += 1
                    } else {
                        rejectedCount += 1
                    }
                }
            } catch {
                stream.fail(.protocolViolation("\(error)"))
                return true
            }
            if okCount + rejectedCount > 0 { stream.acked(ok: okCount, rejected: rejectedCount) }
            if !acks.isEmpty {
                stream.acked(acks)
                acks.removeAll(keepingCapacity: true)
            }
        case .end:
            if status == 200 {
                stream.responseEnded()
            } else {
                stream.fail(.http(status: status, detail: ProblemDetail.detail(from: problem)))
            }
        case .failed(let error):
            stream.fail(error)
        }
        return true
    }
}

@available(*, unavailable)
extension AckReader: Sendable {}
