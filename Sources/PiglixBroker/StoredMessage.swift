import NIOCore
import PiglixWire

/// A published message as the broker keeps and delivers it. The payload is
/// shared, never copied, between retention and every subscriber queue.
public struct StoredMessage: Sendable {
    public var id: MessageID
    public var topic: String
    public var payload: ByteBuffer
    public var delivery: DeliveryLevel
    public var headers: [MessageHeader]
    /// Checked once at publish so each JSON subscriber need not: `data` or `data_b64`.
    public var payloadIsText: Bool

    /// Bytes this message costs against queue and retention bounds.
    @inlinable
    public var costBytes: Int { payload.readableBytes + topic.utf8.count + 64 }

    public init(id: MessageID, topic: String, payload: ByteBuffer, delivery: DeliveryLevel, headers: [MessageHeader], payloadIsText: Bool) {
        self.id = id
        self.topic = topic
        self.payload = payload
        self.delivery = delivery
        self.headers = headers
        self.payloadIsText = payloadIsText
    }
}
