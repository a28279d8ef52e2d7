import NIOCore

/// A message's resume id: the broker run (`epoch`) and the node-wide
/// sequence number the broker gave it. Text form: `<epoch as 8 hex>-<sequence>`,
/// e.g. `5f3a09c1-1042`. Clients treat it as opaque; the broker compares
/// sequence numbers of the same epoch to resume without loss or duplicates.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var epoch: UInt32
    public var sequence: UInt64

    public init(epoch: UInt32, sequence: UInt64) {
        self.epoch = epoch
        self.sequence = sequence
    }

    /// Parses the text form; nil when it is not one.
    public init?(_ text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 10, utf8.count <= 29, utf8[8] == UInt8(ascii: "-") else { return nil }
        var epoch: UInt32 = 0
        for byte in utf8[0..<8] {
            guard let digit = Self.hexValue(byte) else { return nil }
            epoch = epoch << 4 | UInt32(digit)
        }
        var sequence: UInt64 = 0
        for byte in utf8[9...] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = sequence.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            sequence = sum
        }
        self.epoch = epoch
        self.sequence = sequence
    }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool {
        (lhs.epoch, lhs.sequence) < (rhs.epoch, rhs.sequence)
    }

    public var description: String {
        var buffer = ByteBuffer()
        buffer.writeMessageID(self)
        return String(buffer: buffer)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension ByteBuffer {
    /// Writes the text form of `id` without an intermediate String.
    @inlinable
    public mutating func writeMessageID(_ id: MessageID) {
        let hex: StaticString = "0123456789abcdef"
        var shift: UInt32 = 28
        for _ in 0..<8 {
            writeInteger(hex.utf8Start[Int((id.epoch >> shift) & 0xF)])
            shift &-= 4
        }
        writeInteger(UInt8(ascii: "-"))
        writeDecimal(id.sequence)
    }

    /// Writes an unsigned integer in decimal.
    @inlinable
    public mutating func writeDecimal(_ value: UInt64) {
        if value < 10 {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var divisor: UInt64 = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            writeInteger(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    /// The byte count of `id`'s text form.
    @inlinable
    public static func messageIDLength(_ id: MessageID) -> Int {
        var digits = 1
        var value = id.sequence
        while value >= 10 { value /= 10; digits += 1 }
        return 9 + digits
    }
}
