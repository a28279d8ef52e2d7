import NIOCore
import PiglixWire

/// How a published record travels inside a cluster message: its headers
/// (`u16` count, then `u16`-length-prefixed name and value each) and then the
/// payload bytes. The topic travels as the message's destination.
///
/// An idempotent record (docs/patterns.md) sets the count's top bit and puts
/// `u8` producer length, the producer and `u64` sequence (big-endian) right
/// after it, before the headers, so `idempotence(of:)` reads them without
/// decoding the rest. An ordinary record's first byte is below 0x80: it
/// costs one comparison.
enum ClusterPayload {
    static let idempotentFlag = 0x8000

    static func encode(_ record: PublishRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(2 + record.payload.readableBytes + record.headers.count * 32)
        let count = record.headers.count | (record.producer == nil ? 0 : idempotentFlag)
        out.append(UInt8(truncatingIfNeeded: count >> 8))
        out.append(UInt8(truncatingIfNeeded: count))
        if let producer = record.producer {
            out.append(UInt8(truncatingIfNeeded: producer.utf8.count))
            out.append(contentsOf: producer.utf8)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: record.sequence >> UInt64(shift))) }
        }
        for header in record.headers {
            for text in [header.name, header.value] {
                let count = text.utf8.count
                out.append(UInt8(truncatingIfNeeded: count >> 8))
                out.append(UInt8(truncatingIfNeeded: count))
                out.append(contentsOf: text.utf8)
            }
        }
        record.payload.withUnsafeReadableBytes { out.append(contentsOf: $0) }
        return out
    }

    /// The producer and sequence of an idempotent record; nil for an
    /// ordinary one (or a malformed payload).
    @inline(__always)
    static func idempotence(of bytes: [UInt8]) -> (producer: String, sequence: UInt64)? {
        guard let first = bytes.first, first & 0x80 != 0 else { return nil }
        return readIdempotence(bytes)?.0
    }

    private static func readIdempotence(_ bytes: [UInt8]) -> ((producer: String, sequence: UInt64), Int)? {
        guard bytes.count >= 3 else { return nil }
        let n = Int(bytes[2])
        let end = 3 + n + 8
        guard bytes.count >= end else { return nil }
        let producer = String(decoding: bytes[3..<(3 + n)], as: UTF8.self)
        var sequence: UInt64 = 0
        for b in bytes[(3 + n)..<end] { sequence = sequence << 8 | UInt64(b) }
        return ((producer, sequence), end)
    }

    static func decode(_ bytes: [UInt8]) -> (headers: [MessageHeader], payload: ByteBuffer)? {
        var i = 0
        func u16() -> Int? {
            guard i + 2 <= bytes.count else { return nil }
            defer { i += 2 }
            return Int(bytes[i]) << 8 | Int(bytes[i + 1])
        }
        func text() -> String? {
            guard let n = u16(), i + n <= bytes.count else { return nil }
            defer { i += n }
            return String(decoding: bytes[i..<(i + n)], as: UTF8.self)
        }
        guard var count = u16() else { return nil }
        if count & idempotentFlag != 0 {
            guard let (_, end) = readIdempotence(bytes) else { return nil }
            count &= ~idempotentFlag
            i = end
        }
        var headers: [MessageHeader] = []
        for _ in 0..<count {
            guard let name = text(), let value = text() else { return nil }
            headers.append(MessageHeader(name: name, value: value))
        }
        var payload = ByteBuffer()
        payload.reserveCapacity(bytes.count - i)
        payload.writeBytes(bytes[i...])
        return (headers, payload)
    }
}
