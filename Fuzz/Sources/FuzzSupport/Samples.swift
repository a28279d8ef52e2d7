import NIOCore

/// LEB128, as the inter-node codec writes integers (for seeds only).
public func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    repeat {
        var byte = UInt8(value & 0x7F)
        value >>= 7
        if value != 0 { byte |= 0x80 }
        out.append(byte)
    } while value != 0
    return out
}

/// One peer frame: `length: u32` big-endian (of kind and body), `kind: u8`, body.
public func peerFrame(kind: UInt8, body: [UInt8]) -> [UInt8] {
    let length = UInt32(body.count + 1)
    return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), kind] + body
}
