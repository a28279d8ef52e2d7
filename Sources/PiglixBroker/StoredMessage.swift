import PiglixTopics
import NIOCore
import PiglixWire

/// A published message as the broker keeps and delivers it: one shared
/// copy-on-write box, so retention and every subscriber queue hold the same
/// message (a queue entry is one reference; a fan-out to a thousand queues
/// is a thousand retains, not a thousand copies of the fields).
public struct StoredMessage: Sendable {
    /// Mutated only while uniquely referenced (`makeUnique`): the usual
    /// copy-on-write discipline, which the compiler cannot check.
    final class Storage: @unchecked Sendable {
        var id: MessageID
        var topic: String
        var payload: ByteBuffer
        var delivery: DeliveryLevel
        var headers: [MessageHeader]
        var payloadIsText: Bool
        var source: MessageSource?
        /// A work queue assignment's copy: the queue it is sent for.
        var queue: String?
        var redelivered = false

        init(
            id: MessageID, topic: String, payload: ByteBuffer, delivery: DeliveryLevel, headers: [MessageHeader], payloadIsText: Bool,
            source: MessageSource?
        ) {
            self.id = id
            self.topic = topic
            self.payload = payload
            self.delivery = delivery
            self.headers = headers
            self.payloadIsText = payloadIsText
            self.source = source
        }

        func copy() -> Storage {
            let copy = Storage(
                id: id, topic: topic, payload: payload, delivery: delivery, headers: headers, payloadIsText: payloadIsText, source: source)
            copy.queue = queue
            copy.redelivered = redelivered
            return copy
        }
    }

    private var storage: Storage

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    public var id: MessageID {
        get { storage.id }
        set {
            makeUnique()
            storage.id = newValue
        }
    }
    public var topic: String {
        get { storage.topic }
        set {
            makeUnique()
            storage.topic = newValue
        }
    }
    public var payload: ByteBuffer {
        get { storage.payload }
        set {
            makeUnique()
            storage.payload = newValue
        }
    }
    public var delivery: DeliveryLevel {
        get { storage.delivery }
        set {
            makeUnique()
            storage.delivery = newValue
        }
    }
    public var headers: [MessageHeader] {
        get { storage.headers }
        set {
            makeUnique()
            storage.headers = newValue
        }
    }
    /// Checked once at publish so each JSON subscriber need not: `data` or `data_b64`.
    public var payloadIsText: Bool {
        get { storage.payloadIsText }
        set {
            makeUnique()
            storage.payloadIsText = newValue
        }
    }
    /// In a cluster: the message's identity in the group protocol (the view
    /// it was sent in, its origin's rank and sequence number), which a
    /// resume position is compared with.
    public var source: MessageSource? {
        get { storage.source }
        set {
            makeUnique()
            storage.source = newValue
        }
    }

    /// On a work queue stream: the queue this copy was assigned for
    /// (docs/patterns.md, "Work queues"); nil on ordinary streams.
    public var queue: String? {
        get { storage.queue }
        set {
            makeUnique()
            storage.queue = newValue
        }
    }
    /// On a work queue stream: an earlier holder left or failed before acking.
    public var redelivered: Bool {
        get { storage.redelivered }
        set {
            makeUnique()
            storage.redelivered = newValue
        }
    }

    /// Bytes this message costs against queue and retention bounds.
    public var costBytes: Int { storage.payload.readableBytes + storage.topic.utf8.count + 64 }

    public init(
        id: MessageID, topic: String, payload: ByteBuffer, delivery: DeliveryLevel, headers: [MessageHeader], payloadIsText: Bool,
        source: MessageSource? = nil
    ) {
        self.storage = Storage(
            id: id, topic: topic, payload: payload, delivery: delivery, headers: headers, payloadIsText: payloadIsText, source: source)
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
