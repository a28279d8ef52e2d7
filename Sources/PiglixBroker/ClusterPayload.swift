import NIOCore
import PiglixWire

/// How a published record travels inside a cluster message: its headers
/// (`u16` count, then `u16`-length-prefixed name and value each) and then the
/// payload bytes. The topic travels as the message's destination.
enum ClusterPayload {
    static func encode(_ record: PublishRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(2 + record.payload.readableBytes + record.headers.count * 32)
        out.append(UInt8(truncatingIfNeeded: record.headers.count >> 8))
        out.append(UInt8(truncatingIfNeeded: record.headers.count))
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
        guard let count = u16() else { return nil }
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
