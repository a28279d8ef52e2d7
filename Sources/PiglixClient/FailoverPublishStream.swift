import DequeModule
import NIOCore
import PiglixWire
import Synchronization

extension IdempotentPublisher {
    /// A streaming publisher that survives the failure of its node: every
    /// record is numbered (``IdempotentPublisher/producer``, the next
    /// sequence number) and kept until acked; when the stream breaks, or a
    /// node answers 503, the unacked records are sent again, in order and
    /// with their numbers, on a new stream to the client's next node. The
    /// cluster acks a record it had already accepted with its original id, so
    /// `onAck` sees each record's ack once, in send order.
    ///
    /// Send from one task at a time.
    public func publishStream(
        inFlightMax: Int = 1024, onAck: @escaping @Sendable (_ sequence: UInt64, _ ack: PublishAck) -> Void
    ) -> FailoverPublishStream {
        FailoverPublishStream(publisher: self, inFlightMax: inFlightMax, onAck: onAck)
    }
}

/// See ``IdempotentPublisher/publishStream(inFlightMax:onAck:)``.
public final class FailoverPublishStream: Sendable {
    public let publisher: IdempotentPublisher
    public let inFlightMax: Int
    private let onAck: @Sendable (UInt64, PublishAck) -> Void
    private let state = Mutex(State())

    private struct State {
        /// Sent and not yet acked, oldest first.
        var unacked: Deque<PublishRecord> = []
        var stream: PublishStream?
        /// Bumped on every new stream: acks of an older one are ignored.
        var generation = 0
        /// The current stream answered 503 (or the like): replace it.
        var broken = false
        /// Streams opened so far (1 after the first).
        var streams = 0
    }

    init(publisher: IdempotentPublisher, inFlightMax: Int, onAck: @escaping @Sendable (UInt64, PublishAck) -> Void) {
        self.publisher = publisher
        self.inFlightMax = inFlightMax
        self.onAck = onAck
    }

    /// Streams opened so far: more than one after a failover.
    public var streamsOpened: Int { state.withLock { $0.streams } }

    /// Sends one record with the next sequence number, which it returns.
    @discardableResult
    public func send(topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = []) async throws
        -> UInt64
    {
        let sequence = publisher.takeSequence()
        let record = PublishRecord(
            topic: topic, payload: payload, delivery: delivery, headers: headers, producer: publisher.producer, sequence: sequence)
        let stream = state.withLock { state -> PublishStream? in
            state.unacked.append(record)
            return state.broken ? nil : state.stream
        }
        if let stream {
            do {
                try await stream.send(record)
                return sequence
            } catch let error as PiglixClientError where error.isTransient || error == .closed {
                // Below: a new stream takes every unacked record, this one too.
            }
        }
        try await reopen()
        return sequence
    }

    /// Ends the stream once every record is acked (on whichever node).
    public func finish() async throws {
        while true {
            let stream = state.withLock { $0.broken ? nil : $0.stream }
            if let stream {
                do {
                    _ = try await stream.finish()
                } catch let error as PiglixClientError where error.isTransient || error == .closed {
                    // Resent below.
                }
            }
            if state.withLock({ $0.unacked.isEmpty && !$0.broken }) { return }
            try await reopen()
        }
    }

    /// Opens a stream on the next node (after the first) and sends every
    /// unacked record on it, in order, retrying with the client's reconnect
    /// policy.
    private func reopen() async throws {
        let client = publisher.client
        let policy = client.settings.reconnect
        var failures = 0
        while true {
            let (generation, records, first) = state.withLock { state -> (Int, [PublishRecord], Bool) in
                state.generation += 1
                state.broken = false
                state.stream?.cancel()
                state.stream = nil
                return (state.generation, Array(state.unacked), state.streams == 0)
            }
            if !first { client.failover() }
            do {
                let stream = try await client.publishStream(inFlightMax: inFlightMax) { [self] ack in acked(ack, generation: generation) }
                state.withLock { state in
                    if state.generation == generation {
                        state.stream = stream
                        state.streams += 1
                    }
                }
                for record in records { try await stream.send(record) }
                return
            } catch let error as PiglixClientError where error.isTransient || error == .closed {
                failures += 1
                if let attemptsMax = policy.attemptsMax, failures >= attemptsMax {
                    throw PiglixClientError.reconnectGaveUp(attempts: failures, lastError: "\(error)")
                }
                try await Task.sleep(for: policy.delay(attempt: failures))
            }
        }
    }

    /// On the event loop: an ack of the current stream answers the oldest
    /// unacked record; one saying the node cannot take it now (503 …) marks
    /// the stream broken, to be replaced on the next call.
    private func acked(_ ack: PublishAck, generation: Int) {
        let sequence = state.withLock { state -> UInt64? in
            guard state.generation == generation, !state.broken, !state.unacked.isEmpty else { return nil }
            if [429, 502, 503, 504].contains(ack.status) {
                state.broken = true
                return nil
            }
            return state.unacked.removeFirst().sequence
        }
        if let sequence { onAck(sequence, ack) }
    }
}
