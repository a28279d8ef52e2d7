import PiglixTopics
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
    /// In a cluster: the message's identity in the group protocol (the view
    /// it was sent in, its origin's rank and sequence number), which a
    /// resume position is compared with.
    public var source: MessageSource?

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
        self.source = nil
    }
}

/// A cluster message's identity in the group protocol.
public struct MessageSource: Sendable, Hashable {
    public var view: UInt64
    public var origin: UInt32
    public var seq: UInt64
    public init(view: UInt64, origin: UInt32, seq: UInt64) {
        self.view = view
        self.origin = origin
        self.seq = seq
    }
}

extension ClusterPosition {
    /// True when a client at this position has already seen `source`.
    @inlinable
    public func covers(_ source: MessageSource) -> Bool {
        covers(view: source.view, origin: source.origin, seq: source.seq)
    }
}
