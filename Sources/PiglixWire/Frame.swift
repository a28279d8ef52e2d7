import NIOCore

/// The binary frame format (docs/protocol.md, "Binary frames"). Every frame is
/// a 5-byte header, `type: u8` then `length: u32` big-endian, followed by
/// `length` bytes of body. Integers are big-endian; strings are UTF-8.
public enum FrameType: UInt8, Sendable {
    /// Client → server on `/v1/publish`: one message to publish.
    case publish = 0x01
    /// Server → client on `/v1/subscribe`: one delivered message.
    case message = 0x02
    /// Server → client on `/v1/publish`: the ack of one publish frame, in input order.
    case ack = 0x03
    /// Server → client: a control record (`view`, `gap`, `heartbeat`, `end`) as
    /// the same UTF-8 JSON object the NDJSON format carries, without newline.
    case event = 0x04
}

/// The media type of the binary frame format, for `Content-Type` and `Accept`.
public let binaryFramesMediaType = "application/vnd.piglix.frames"

public enum FrameHeader {
    public static let size = 5
}

/// Why a frame could not be decoded.
public enum FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownType(UInt8)
    case tooLarge(length: Int, max: Int)
    case malformed(String)

    public var description: String {
        switch self {
        case .unknownType(let type): return "unknown frame type 0x\(String(type, radix: 16))"
        case .tooLarge(let length, let max): return "frame body of \(length) bytes is over the limit of \(max)"
        case .malformed(let reason): return "malformed frame: \(reason)"
        }
    }
}

/// One decoded frame: its type and a slice of the input holding its body.
public struct Frame: Sendable {
    public var type: FrameType
    public var body: ByteBuffer

    public init(type: FrameType, body: ByteBuffer) {
        self.type = type
        self.body = body
    }
}

/// Cuts a byte stream into frames. Frames that lie whole in one appended
/// chunk are slices of it, not copies; only a frame that straddles two chunks
/// is copied together. Holds at most one partial frame, whose size is checked
/// against `bodyBytesMax` from its header before any of its body is buffered,
/// so a hostile length cannot make it allocate.
public struct FrameDecoder: Sendable {
    public let bodyBytesMax: Int
    /// The latest chunk; whole frames are cut from it.
    private var buffer = ByteBuffer()
    /// A frame begun in an earlier chunk, gathered until it is whole.
    private var partial = ByteBuffer()

    public init(bodyBytesMax: Int) {
        self.bodyBytesMax = bodyBytesMax
    }

    /// Bytes held that do not yet make a whole frame.
    public var bufferedBytes: Int { buffer.readableBytes + partial.readableBytes }

    public mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes > 0 {
            // The rest of the previous chunk begins a frame: keep only that.
            var rest = buffer
            partial.writeBuffer(&rest)
        }
        buffer = bytes
    }

    /// The next whole frame, nil when more bytes are needed.
    public mutating func next() throws(FrameError) -> Frame? {
        if partial.readableBytes > 0 { return try nextFromPartial() }
        guard buffer.readableBytes >= FrameHeader.size else { return nil }
        let (type, bodyLength) = try header(of: buffer)
        guard buffer.readableBytes >= FrameHeader.size + bodyLength else { return nil }
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        return Frame(type: type, body: buffer.readSlice(length: bodyLength)!)
    }

    /// Completes the frame in `partial` from the current chunk.
    private mutating func nextFromPartial() throws(FrameError) -> Frame? {
        if partial.readableBytes < FrameHeader.size {
            var head = buffer.readSlice(length: min(FrameHeader.size - partial.readableBytes, buffer.readableBytes))!
            partial.writeBuffer(&head)
            if partial.readableBytes < FrameHeader.size { return nil }
        }
        let (type, bodyLength) = try header(of: partial)
        let missing = FrameHeader.size + bodyLength - partial.readableBytes
        if missing > 0 {
            partial.reserveCapacity(minimumWritableBytes: missing)
            var piece = buffer.readSlice(length: min(missing, buffer.readableBytes))!
            partial.writeBuffer(&piece)
            if partial.readableBytes < FrameHeader.size + bodyLength { return nil }
        }
        partial.moveReaderIndex(forwardBy: FrameHeader.size)
        let body = partial.readSlice(length: bodyLength)!
        if partial.readableBytes == 0 { partial = ByteBuffer() }
        return Frame(type: type, body: body)
    }

    /// The type and body length of the frame at the front of `bytes` (5 bytes or more).
    private func header(of bytes: ByteBuffer) throws(FrameError) -> (FrameType, Int) {
        let rawType: UInt8 = bytes.getInteger(at: bytes.readerIndex)!
        let length: UInt32 = bytes.getInteger(at: bytes.readerIndex + 1)!
        guard let type = FrameType(rawValue: rawType) else { throw .unknownType(rawType) }
        let bodyLength = Int(length)
        if bodyLength > bodyBytesMax { throw .tooLarge(length: bodyLength, max: bodyBytesMax) }
        return (type, bodyLength)
    }
}

extension ByteBuffer {
    /// Writes a frame header whose length is patched by `endFrame(at:)`.
    @inlinable
    public mutating func beginFrame(_ type: FrameType) -> Int {
        writeInteger(type.rawValue)
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        return lengthIndex
    }

    /// Patches the length of the frame begun at `lengthIndex`.
    @inlinable
    public mutating func endFrame(at lengthIndex: Int) {
        setInteger(UInt32(writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    /// Writes a u16-length-prefixed UTF-8 string.
    @inlinable
    public mutating func writeShortString(_ string: String) {
        let lengthIndex = writerIndex
        writeInteger(UInt16(0))
        let written = writeString(string)
        setInteger(UInt16(truncatingIfNeeded: written), at: lengthIndex)
    }

    /// Reads a u16-length-prefixed UTF-8 string.
    @inlinable
    public mutating func readShortString() -> String? {
        guard let length: UInt16 = readInteger() else { return nil }
        return readString(length: Int(length))
    }
}

/// Writes into raw memory a caller reserved (see `ByteBuffer.writeRaw`):
/// the hot-path frames use it to write their fixed fields with one capacity
/// check and one writer-index move, not one per field.
@usableFromInline
struct RawWriter {
    @usableFromInline let bytes: UnsafeMutableRawBufferPointer
    @usableFromInline var position = 0

    @inlinable
    init(_ bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    @inlinable
    mutating func byte(_ value: UInt8) {
        bytes[position] = value
        position &+= 1
    }

    @inlinable
    mutating func uint16(_ value: UInt16) {
        bytes.storeBytes(of: value.bigEndian, toByteOffset: position, as: UInt16.self)
        position &+= 2
    }

    /// A u16-length-prefixed string; its length must have been reserved.
    @inlinable
    mutating func shortString(_ string: String) {
        let lengthIndex = position
        position &+= 2
        let start = position
        let copied: Bool? = string.utf8.withContiguousStorageIfAvailable { utf8 in
            UnsafeMutableRawBufferPointer(rebasing: bytes[position..<(position + utf8.count)])
                .copyMemory(from: UnsafeRawBufferPointer(utf8))
            position &+= utf8.count
            return true
        }
        if copied == nil {
            for byte in string.utf8 { self.byte(byte) }
        }
        bytes.storeBytes(of: UInt16(truncatingIfNeeded: position - start).bigEndian, toByteOffset: lengthIndex, as: UInt16.self)
    }

    /// A u16-length-prefixed message id, single-node form; 31 bytes reserved.
    @inlinable
    mutating func shortMessageID(epoch: UInt32, sequence: UInt64) {
        let lengthIndex = position
        position &+= 2
        let hex: StaticString = "0123456789abcdef"
        var shift: UInt32 = 28
        for _ in 0..<8 {
            byte(hex.utf8Start[Int((epoch >> shift) & 0xF)])
            shift &-= 4
        }
        byte(UInt8(ascii: "-"))
        position &+= ByteBuffer.formatDecimal(sequence, into: UnsafeMutableRawBufferPointer(rebasing: bytes[position...]))
        bytes.storeBytes(of: UInt16(truncatingIfNeeded: position - lengthIndex - 2).bigEndian, toByteOffset: lengthIndex, as: UInt16.self)
    }
}

extension ByteBuffer {
    /// Reserves `maxBytes`, lets `body` write at most that many through a
    /// ``RawWriter``, and moves the writer index past what it wrote.
    @inlinable
    mutating func writeRaw(maxBytes: Int, _ body: (inout RawWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: maxBytes) { raw in
            var writer = RawWriter(raw)
            body(&writer)
            return writer.position
        }
    }
}
