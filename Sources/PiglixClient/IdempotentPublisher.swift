import NIOCore
import PiglixWire
import Synchronization

/// Publishes single messages that survive a node's failure without being
/// published twice: each record carries this publisher's name and the next
/// sequence number (`Piglix-Producer`, `Piglix-Sequence`), and a record whose
/// answer was lost (connection broken, node down, 503 outside the primary
/// component) is sent again, with the same number, to the client's next
/// node. The cluster answers a retry of a record it already accepted with
/// the original id and does not deliver it again (docs/patterns.md,
/// "Idempotent publish").
///
/// ```swift
/// let client = try PiglixClient(urls: ["http://n1:8080", "http://n2:8080", "http://n3:8080"])
/// let publisher = IdempotentPublisher(client: client, producer: "orders-7")
/// let ack = try await publisher.publish(topic: "orders.new", payload: ByteBuffer(string: "{...}"))
/// ```
///
/// A producer name must be unique among live publishers, and its sequence
/// numbers must increase: a new publisher with a name already used starts
/// after the numbers used before (`firstSequence`), or the cluster takes
/// its records for retries of old ones.
public final class IdempotentPublisher: Sendable {
    public let client: PiglixClient
    public let producer: String
    private let next: Mutex<UInt64>

    /// - Parameters:
    ///   - producer: 1 to 64 bytes of `[A-Za-z0-9._:-]`; a random name by default.
    ///   - firstSequence: the first record's number (at least 1).
    public init(client: PiglixClient, producer: String? = nil, firstSequence: UInt64 = 1) {
        self.client = client
        self.producer = producer ?? "p-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        self.next = Mutex(max(firstSequence, 1))
    }

    /// The number the next record gets.
    public var nextSequence: UInt64 { next.withLock { $0 } }

    /// Publishes one record with the next sequence number, retrying on
    /// another node (client's ``PiglixClientSettings/reconnect`` policy)
    /// until the cluster answers. A 4xx other than 429 is thrown at once.
    public func publish(
        topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = []
    ) async throws -> PublishAck {
        let sequence = takeSequence()
        return try await publish(topic: topic, payload: payload, delivery: delivery, headers: headers, sequence: sequence)
    }

    /// Takes the next sequence number.
    func takeSequence() -> UInt64 {
        next.withLock { value -> UInt64 in
            defer { value += 1 }
            return value
        }
    }

    /// Publishes (or republishes) the record numbered `sequence`.
    public func publish(
        topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = [], sequence: UInt64
    ) async throws -> PublishAck {
        let policy = client.settings.reconnect
        var failures = 0
        while true {
            do {
                return try await client.publish(
                    topic: topic, payload: payload, delivery: delivery, headers: headers, idempotence: (producer, sequence))
            } catch let error as PiglixClientError where error.isTransient {
                failures += 1
                if let attemptsMax = policy.attemptsMax, failures >= attemptsMax {
                    throw PiglixClientError.reconnectGaveUp(attempts: failures, lastError: "\(error)")
                }
                // The answer was lost or the node cannot take it: the next
                // attempt goes to the next node, with the same number.
                if case .http = error { client.failover() }
                try await Task.sleep(for: policy.delay(attempt: failures - 1))
            }
        }
    }
}
