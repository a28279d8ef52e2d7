import NIOCore
import PiglixCluster
import PiglixGroups
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

    // MARK: The idempotence table (docs/patterns.md, "Idempotent publish")

    typealias ProducerState = IdempotenceTable<IdempotentOriginal>.ProducerState

    /// Marks a chunk's trailer: part of the provider's idempotence table.
    static let tableMarker: UInt8 = 0x49

    /// A chunk of no messages whose trailer holds some producers of the
    /// provider's table and the provider's position at the cut:
    /// `u32 0`, `u8 0x49`, `u64 view`, `u32 n`, `n × u64` delivered,
    /// `u32 producers`, per producer `string name`, `u64 highest`,
    /// `u32 entries`, per entry `u64 sequence`, `u8 level`, `u64 view`,
    /// `u32 origin`, `u64 seq`. A reader of the plain format reads it as a
    /// chunk of no messages.
    static func encodeTable(_ producers: ArraySlice<ProducerState>, cut: ClusterPosition) -> [UInt8] {
        var b = ByteBuffer()
        b.reserveCapacity(32 + producers.reduce(0) { $0 + 32 + $1.producer.utf8.count + $1.entries.count * 29 })
        b.writeInteger(UInt32(0))
        b.writeInteger(tableMarker)
        b.writeInteger(cut.view)
        b.writeInteger(UInt32(cut.delivered.count))
        for d in cut.delivered { b.writeInteger(d) }
        b.writeInteger(UInt32(producers.count))
        for p in producers {
            write(p.producer, into: &b)
            b.writeInteger(p.highest)
            b.writeInteger(UInt32(p.entries.count))
            for e in p.entries {
                let source = e.original.source ?? MessageSource(view: 0, origin: 0, seq: 0)
                b.writeInteger(e.sequence)
                b.writeInteger(e.original.level.rawValue)
                b.writeInteger(source.view)
                b.writeInteger(source.origin)
                b.writeInteger(source.seq)
            }
        }
        return Array(b.readableBytesView)
    }

    /// The table part of a chunk, nil when it has none.
    static func decodeTable(_ bytes: [UInt8]) throws -> (cut: ClusterPosition, producers: [ProducerState])? {
        guard bytes.count >= 5, bytes[4] == tableMarker, bytes[0...3].allSatisfy({ $0 == 0 }) else { return nil }
        var b = ByteBuffer(bytes: bytes)
        b.moveReaderIndex(forwardBy: 5)
        guard let view: UInt64 = b.readInteger(), let n: UInt32 = b.readInteger(), n <= UInt32(ClusterPosition.ranksMax) else {
            throw Corrupt()
        }
        var delivered: [UInt64] = []
        for _ in 0..<n {
            guard let d: UInt64 = b.readInteger() else { throw Corrupt() }
            delivered.append(d)
        }
        guard let count: UInt32 = b.readInteger(), Int(count) <= b.readableBytes / 14 + 1 else { throw Corrupt() }
        var producers: [ProducerState] = []
        for _ in 0..<count {
            guard let name = read(&b), let highest: UInt64 = b.readInteger(), let entries: UInt32 = b.readInteger(),
                Int(entries) <= b.readableBytes / 29
            else { throw Corrupt() }
            var list: [(sequence: UInt64, original: IdempotentOriginal)] = []
            list.reserveCapacity(Int(entries))
            for _ in 0..<entries {
                guard let sequence: UInt64 = b.readInteger(), let rawLevel: UInt8 = b.readInteger(),
                    let level = DeliveryLevel(rawValue: rawLevel), let sourceView: UInt64 = b.readInteger(),
                    let origin: UInt32 = b.readInteger(), origin < UInt32(ClusterPosition.ranksMax), let seq: UInt64 = b.readInteger()
                else { throw Corrupt() }  // origin: a rank; `agreedID` allocates `origin + 1` counts
                list.append((sequence, IdempotentOriginal(level: level, source: MessageSource(view: sourceView, origin: origin, seq: seq))))
            }
            producers.append(ProducerState(producer: name, highest: highest, entries: list))
        }
        return (ClusterPosition(view: view, delivered: delivered), producers)
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
    /// The idempotence group's checkpoint: the provider's table at the cut,
    /// sent first, a chunk per run of producers of about `bytes`.
    var table: [CheckpointCodec.ProducerState]?
    var cut = ClusterPosition(view: 0, delivered: [])
    var nextProducer = 0

    init(messages: [StoredMessage]) {
        self.messages = messages
    }

    init(table: [CheckpointCodec.ProducerState], cut: ClusterPosition) {
        self.messages = []
        self.table = table
        self.cut = cut
    }

    mutating func nextChunk(bytes: Int) -> (chunk: [UInt8], last: Bool) {
        if let table {
            var end = nextProducer
            var size = 0
            while end < table.count && (end == nextProducer || size + 32 + table[end].entries.count * 29 <= bytes) {
                size += 32 + table[end].entries.count * 29
                end += 1
            }
            let chunk = CheckpointCodec.encodeTable(table[nextProducer..<end], cut: cut)
            nextProducer = end
            return (chunk, end == table.count && messages.isEmpty)
        }
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
