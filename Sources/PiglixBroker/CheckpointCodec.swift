import NIOCore
import PiglixCluster
import PiglixTopics
import PiglixWire

/// A group's state for state transfer: its retained messages, oldest first,
/// each with its topic, level, headers, resume id and protocol identity.
/// A checkpoint travels as several of these, each a whole number of
/// messages, so the joiner applies each chunk as it arrives.
enum CheckpointCodec {
    struct Corrupt: Error, CustomStringConvertible {
        var description: String { "truncated or malformed checkpoint" }
    }

    static func encode<Messages: Collection<StoredMessage>>(_ messages: Messages) -> [UInt8] {
        var b = ByteBuffer()
        b.reserveCapacity(messages.reduce(4) { $0 + $1.costBytes + 64 })
        b.writeInteger(UInt32(messages.count))
        for m in messages {
            write(m.topic, into: &b)
            b.writeInteger(m.delivery.rawValue)
            b.writeInteger(UInt8(m.payloadIsText ? 1 : 0))
            b.writeInteger(UInt16(m.headers.count))
            for h in m.headers {
                write(h.name, into: &b)
                write(h.value, into: &b)
            }
            let position = m.id.position ?? ClusterPosition(view: 0, delivered: [])
            b.writeInteger(position.view)
            b.writeInteger(UInt32(position.delivered.count))
            for d in position.delivered { b.writeInteger(d) }
            let source = m.source ?? MessageSource(view: 0, origin: 0, seq: 0)
            b.writeInteger(source.view)
            b.writeInteger(source.origin)
            b.writeInteger(source.seq)
            b.writeInteger(UInt32(m.payload.readableBytes))
            var payload = m.payload
            b.writeBuffer(&payload)
        }
        return Array(b.readableBytesView)
    }

    static func decode(_ bytes: [UInt8], topicLimits: TopicLimits) throws -> [StoredMessage] {
        // A group's first member starts from the empty state.
        if bytes.isEmpty { return [] }
        var b = ByteBuffer(bytes: bytes)
        guard let count: UInt32 = b.readInteger() else { throw Corrupt() }
        var out: [StoredMessage] = []
        for _ in 0..<count {
            guard let topic = read(&b), let rawLevel: UInt8 = b.readInteger(), let level = DeliveryLevel(rawValue: rawLevel),
                let isText: UInt8 = b.readInteger(), let headerCount: UInt16 = b.readInteger()
            else { throw Corrupt() }
            var headers: [MessageHeader] = []
            for _ in 0..<headerCount {
                guard let name = read(&b), let value = read(&b) else { throw Corrupt() }
                headers.append(MessageHeader(name: name, value: value))
            }
            guard let view: UInt64 = b.readInteger(), let n: UInt32 = b.readInteger(), n <= UInt32(ClusterPosition.ranksMax) else { throw Corrupt() }
            var delivered: [UInt64] = []
            for _ in 0..<n {
                guard let d: UInt64 = b.readInteger() else { throw Corrupt() }
                delivered.append(d)
            }
            guard let sourceView: UInt64 = b.readInteger(), let origin: UInt32 = b.readInteger(), let seq: UInt64 = b.readInteger(),
                let length: UInt32 = b.readInteger(), let payload = b.readSlice(length: Int(length))
            else { throw Corrupt() }
            var message = StoredMessage(
                id: PiglixWire.MessageID(sequence: 0, position: ClusterPosition(view: view, delivered: delivered)), topic: topic,
                payload: payload, delivery: level, headers: headers, payloadIsText: isText != 0)
            message.source = MessageSource(view: sourceView, origin: origin, seq: seq)
            out.append(message)
        }
        return out
    }

    private static func write(_ s: String, into b: inout ByteBuffer) {
        b.writeInteger(UInt16(truncatingIfNeeded: s.utf8.count))
        b.writeString(s)
    }

    private static func read(_ b: inout ByteBuffer) -> String? {
        guard let n: UInt16 = b.readInteger() else { return nil }
        return b.readString(length: Int(n))
    }
}

/// The retained history of a group at a checkpoint's cut. It holds the
/// messages (their payloads are shared, not copied) and encodes one chunk
/// at a time, so the provider never holds a second copy of the whole state.
struct RetainedCheckpoint: CheckpointReader {
    let messages: [StoredMessage]
    var next = 0

    mutating func nextChunk(bytes: Int) -> (chunk: [UInt8], last: Bool) {
        var end = next
        var size = 0
        while end < messages.count && (end == next || size + messages[end].costBytes <= bytes) {
            size += messages[end].costBytes
            end += 1
        }
        let chunk = CheckpointCodec.encode(messages[next..<end])
        next = end
        return (chunk, next == messages.count)
    }
}
