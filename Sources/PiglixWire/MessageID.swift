import NIOCore

/// A message's resume id. Two forms (docs/protocol.md, "Message ids"):
///
/// - one node: the broker run (`epoch`) and the node-wide sequence number,
///   text `<epoch as 8 hex>-<sequence>`, e.g. `5f3a09c1-1042`;
/// - cluster: the delivering node's position in the cluster's delivery
///   stream right after the message, text `v<view>.<d0>.<d1>…`, e.g.
///   `v7.120.0.33`: in view 7, 120 messages of the member of rank 0, none
///   of rank 1, 33 of rank 2 were delivered. Virtual synchrony makes every
///   node that was in view 7 deliver the same messages of earlier views and
///   each origin's messages in the same order, so any node can tell exactly
///   which retained messages a client has not seen yet.
///
/// Clients treat ids as opaque. `epoch` and `sequence` also order messages
/// on the node that holds them (`sequence` is node-local in the cluster form
/// and not part of its text).
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var epoch: UInt32
    public var sequence: UInt64
    /// The cluster form's position; nil for the single-node form.
    public var position: ClusterPosition?

    public init(epoch: UInt32, sequence: UInt64) {
        self.epoch = epoch
        self.sequence = sequence
        self.position = nil
    }

    public init(sequence: UInt64, position: ClusterPosition) {
        self.epoch = 0
        self.sequence = sequence
        self.position = position
    }

    /// Parses the text form; nil when it is not one.
    public init?(_ text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        if utf8.first == UInt8(ascii: "v") {
            guard let position = ClusterPosition(utf8[1...]) else { return nil }
            self.init(sequence: 0, position: position)
            return
        }
        guard utf8.count >= 10, utf8.count <= 29, utf8[8] == UInt8(ascii: "-") else { return nil }
        var epoch: UInt32 = 0
        for byte in utf8[0..<8] {
            guard let digit = Self.hexValue(byte) else { return nil }
            epoch = epoch << 4 | UInt32(digit)
        }
        guard let sequence = Self.decimal(utf8[9...]) else { return nil }
        self.init(epoch: epoch, sequence: sequence)
    }

    static func decimal(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
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
    /// Writes the text form of `id` without an intermediate String: one
    /// capacity check and one writer-index move, not one per character
    /// (ids are written twice per message, in the ack and in the delivery).
    @inlinable
    public mutating func writeMessageID(_ id: MessageID) {
        if let position = id.position {
            writeInteger(UInt8(ascii: "v"))
            writeDecimal(position.view)
            for count in position.delivered {
                writeInteger(UInt8(ascii: "."))
                writeDecimal(count)
            }
            return
        }
        // 8 hex digits, "-", at most 20 decimal digits.
        writeWithUnsafeMutableBytes(minimumWritableBytes: 29) { out in
            let hex: StaticString = "0123456789abcdef"
            var shift: UInt32 = 28
            for index in 0..<8 {
                out[index] = hex.utf8Start[Int((id.epoch >> shift) & 0xF)]
                shift &-= 4
            }
            out[8] = UInt8(ascii: "-")
            return 9 + Self.formatDecimal(id.sequence, into: UnsafeMutableRawBufferPointer(rebasing: out[9...]))
        }
    }

    /// Writes an unsigned integer in decimal.
    @inlinable
    public mutating func writeDecimal(_ value: UInt64) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: 20) { out in Self.formatDecimal(value, into: out) }
    }

    /// Formats `value` in decimal at the start of `out` (room for 20 digits)
    /// and returns the digit count.
    @inlinable
    static func formatDecimal(_ value: UInt64, into out: UnsafeMutableRawBufferPointer) -> Int {
        let digits = decimalLength(value)
        var rest = value
        var index = digits
        repeat {
            index &-= 1
            let (quotient, remainder) = rest.quotientAndRemainder(dividingBy: 10)
            out[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remainder)
            rest = quotient
        } while index > 0
        return digits
    }

    /// The byte count of `id`'s text form.
    @inlinable
    public static func messageIDLength(_ id: MessageID) -> Int {
        if let position = id.position {
            var length = 1 + decimalLength(position.view)
            for count in position.delivered { length += 1 + decimalLength(count) }
            return length
        }
        return 9 + decimalLength(id.sequence)
    }

    @inlinable
    static func decimalLength(_ value: UInt64) -> Int {
        var digits = 1
        var value = value
        while value >= 10 { value /= 10; digits += 1 }
        return digits
    }
}

/// A node's position in the cluster's delivery stream: the view's epoch and,
/// per origin rank of that view, how many of its messages were delivered.
public struct ClusterPosition: Hashable, Sendable {
    public var view: UInt64
    public var delivered: [UInt64]
    /// At most this many ranks in a parsed id (bounds what a client can send).
    public static let ranksMax = 1024

    public init(view: UInt64, delivered: [UInt64]) {
        self.view = view
        self.delivered = delivered
    }

    /// Parses `<view>.<d0>.<d1>…` (the text after the `v`).
    init?(_ text: ArraySlice<UInt8>) {
        let parts = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count >= 1, parts.count <= Self.ranksMax + 1, let view = MessageID.decimal(parts[0]) else { return nil }
        var delivered: [UInt64] = []
        for part in parts.dropFirst() {
            guard let count = MessageID.decimal(part) else { return nil }
            delivered.append(count)
        }
        self.init(view: view, delivered: delivered)
    }

    /// True when a client at this position has seen the message sent in
    /// view `view` by rank `origin` as its `seq`-th message.
    @inlinable
    public func covers(view messageView: UInt64, origin: UInt32, seq: UInt64) -> Bool {
        if messageView != view { return messageView < view }
        let r = Int(origin)
        return r < delivered.count && seq <= delivered[r]
    }
}
