import NIOCore

/// Standard base64 (RFC 4648 §4, with padding) straight into and out of
/// ByteBuffers, so binary payloads in JSON records cost no Foundation round trip.
public enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Appends the base64 text of `bytes` to `out`.
    public static func encode(_ bytes: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let length = (bytes.count + 2) / 3 * 4
        out.reserveCapacity(minimumWritableBytes: length)
        _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
            var o = 0
            var i = 0
            let n = bytes.count
            while i + 3 <= n {
                let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                target[o] = alphabet[Int(v >> 18 & 63)]
                target[o + 1] = alphabet[Int(v >> 12 & 63)]
                target[o + 2] = alphabet[Int(v >> 6 & 63)]
                target[o + 3] = alphabet[Int(v & 63)]
                i += 3
                o += 4
            }
            if n - i == 1 {
                let v = UInt32(bytes[i]) << 16
                target[o] = alphabet[Int(v >> 18 & 63)]
                target[o + 1] = alphabet[Int(v >> 12 & 63)]
                target[o + 2] = UInt8(ascii: "=")
                target[o + 3] = UInt8(ascii: "=")
                o += 4
            } else if n - i == 2 {
                let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
                target[o] = alphabet[Int(v >> 18 & 63)]
                target[o + 1] = alphabet[Int(v >> 12 & 63)]
                target[o + 2] = alphabet[Int(v >> 6 & 63)]
                target[o + 3] = UInt8(ascii: "=")
                o += 4
            }
            return o
        }
    }

    /// Decodes base64 text (padding optional); nil when it is not base64.
    public static func decode(_ text: some Collection<UInt8>, into out: inout ByteBuffer) -> Bool {
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            if padding > 0 { return false }
            let value = decodeTable[Int(byte)]
            if value == 0xFF { return false }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.writeInteger(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return padding <= 2 && bits < 6
    }
}
