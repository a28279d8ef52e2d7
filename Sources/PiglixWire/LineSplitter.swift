import NIOCore

/// Cuts a byte stream into newline-terminated lines (NDJSON). A line longer
/// than `lineBytesMax` is reported once as `.tooLong` and then skipped up to
/// its newline without being buffered, so one huge line costs no memory and
/// the stream goes on with the next line.
public struct LineSplitter: Sendable {
    public enum Item: Sendable {
        case line(ByteBuffer)
        case tooLong(bytes: Int)
    }

    public let lineBytesMax: Int
    private var buffer = ByteBuffer()
    private var skipping = false
    private var skippedBytes = 0
    private var scanned = 0

    public init(lineBytesMax: Int) {
        self.lineBytesMax = lineBytesMax
    }

    public var bufferedBytes: Int { buffer.readableBytes }

    public mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes
            scanned = 0
        } else {
            var bytes = bytes
            buffer.writeBuffer(&bytes)
        }
    }

    /// The next whole line without its newline (`\r\n` also accepted); empty lines are skipped.
    public mutating func next() -> Item? {
        while true {
            let newline = buffer.withUnsafeReadableBytes { bytes -> Int? in
                var index = scanned
                while index < bytes.count {
                    if bytes[index] == UInt8(ascii: "\n") { return index }
                    index += 1
                }
                return nil
            }
            guard let newline else {
                scanned = buffer.readableBytes
                if skipping {
                    skippedBytes += buffer.readableBytes
                    buffer.clear()
                    scanned = 0
                } else if buffer.readableBytes > lineBytesMax {
                    skipping = true
                    skippedBytes = buffer.readableBytes
                    buffer.clear()
                    scanned = 0
                }
                return nil
            }
            var line = buffer.readSlice(length: newline)!
            buffer.moveReaderIndex(forwardBy: 1)
            scanned = 0
            if buffer.readableBytes == 0 { buffer.clear() }
            if skipping {
                skipping = false
                let total = skippedBytes + line.readableBytes
                skippedBytes = 0
                return .tooLong(bytes: total)
            }
            if line.readableBytes > lineBytesMax { return .tooLong(bytes: line.readableBytes) }
            if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
                line.moveWriterIndex(to: line.writerIndex - 1)
            }
            if line.readableBytes == 0 { continue }
            return .line(line)
        }
    }

    /// At end of input: the last line if it had no newline.
    public mutating func finish() -> Item? {
        if skipping {
            skipping = false
            return .tooLong(bytes: skippedBytes)
        }
        guard buffer.readableBytes > 0 else { return nil }
        let line = buffer
        buffer.clear()
        scanned = 0
        if line.readableBytes > lineBytesMax { return .tooLong(bytes: line.readableBytes) }
        return .line(line)
    }
}
