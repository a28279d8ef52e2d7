import CompressNIO
import NIOCore

/// A content coding the front end understands (`Content-Encoding`, `Accept-Encoding`).
public enum ContentCoding: String, Sendable, CaseIterable {
    case gzip
    case deflate

    var zlibAlgorithm: ZlibAlgorithm {
        switch self {
        case .gzip: return .gzip
        // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
        case .deflate: return .zlib
        }
    }

    /// Parses a `Content-Encoding` value; `identity` and empty are nil.
    public static func parse(contentEncoding: some StringProtocol) -> Result<ContentCoding?, UnsupportedCoding> {
        let value = contentEncoding.trimmingWhitespace().lowercased()
        switch value {
        case "", "identity": return .success(nil)
        case "gzip", "x-gzip": return .success(.gzip)
        case "deflate": return .success(.deflate)
        default: return .failure(UnsupportedCoding(name: String(value)))
        }
    }

    /// Picks gzip or deflate from an `Accept-Encoding` value, by q-value, gzip first on ties.
    public static func negotiate(acceptEncoding: some StringProtocol) -> ContentCoding? {
        var best: (ContentCoding, Double)? = nil
        for part in acceptEncoding.split(separator: ",") {
            let pieces = part.split(separator: ";")
            guard let first = pieces.first else { continue }
            let name = first.trimmingWhitespace().lowercased()
            var quality = 1.0
            for parameter in pieces.dropFirst() {
                let pair = parameter.trimmingWhitespace()
                if pair.hasPrefix("q=") { quality = Double(pair.dropFirst(2)) ?? 0 }
            }
            guard quality > 0 else { continue }
            let coding: ContentCoding
            switch name {
            case "gzip", "x-gzip": coding = .gzip
            case "deflate": coding = .deflate
            default: continue
            }
            if best == nil || quality > best!.1 || (quality == best!.1 && coding == .gzip) { best = (coding, quality) }
        }
        return best?.0
    }
}

public struct UnsupportedCoding: Error, Sendable {
    public var name: String
}

extension StringProtocol {
    func trimmingWhitespace() -> Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}

/// One compressor for a whole response stream. Each `compress(_:)` ends with
/// a zlib sync flush, so everything written so far decodes at once on the
/// client: a batch is readable when it arrives, not when the stream ends.
/// Not thread-safe; owned by one stream's writer.
public final class StreamCompressor {
    private let compressor: ZlibCompressor
    private var finished = false

    /// `windowBits` 9…15 and `memoryLevel` 1…9 as for zlib's deflateInit2;
    /// the defaults are zlib's (about 262 KiB a stream, ``stateBytes(windowBits:memoryLevel:)``).
    public init(
        _ coding: ContentCoding, level: ZlibConfiguration.CompressionLevel = .fastestCompression,
        windowBits: Int32 = 15, memoryLevel: Int32 = 8
    ) throws {
        compressor = try ZlibCompressor(
            algorithm: coding.zlibAlgorithm,
            configuration: .init(windowSize: windowBits, compressionLevel: level.rawValue, memoryLevel: memoryLevel))
    }

    /// What one compressor holds for its whole life: zlib's deflate memory,
    /// (1 << (windowBits + 2)) + (1 << (memoryLevel + 9)) (zconf.h), plus
    /// its state struct (about 6 KiB). The memory goes back (deflateEnd)
    /// when the compressor is released.
    public static func stateBytes(windowBits: Int32, memoryLevel: Int32) -> Int {
        (1 << (windowBits + 2)) + (1 << (memoryLevel + 9)) + 6 * 1024
    }

    /// Compresses `input` and sync-flushes; returns the bytes to send.
    public func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        var input = input
        var output = allocator.buffer(capacity: compressor.maxSize(from: input))
        while true {
            do {
                try compressor.deflate(from: &input, to: &output, flush: .sync)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                output.reserveCapacity(minimumWritableBytes: 4096)
                continue
            }
            // A sync flush is complete when zlib left output space unused.
            if input.readableBytes == 0 && output.writableBytes > 0 { return output }
            output.reserveCapacity(minimumWritableBytes: max(4096, input.readableBytes))
        }
    }

    /// Ends the stream (gzip trailer); returns the last bytes to send.
    public func finish() throws -> ByteBuffer {
        guard !finished else { return ByteBuffer() }
        finished = true
        var empty = ByteBuffer()
        empty.reserveCapacity(16)
        var output = ByteBuffer()
        output.reserveCapacity(64)
        while true {
            do {
                try compressor.deflate(from: &empty, to: &output, flush: .finish)
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                output.reserveCapacity(minimumWritableBytes: 256)
            }
        }
    }
}

/// The decompressed output grew over its limit: a decompression bomb or an
/// oversize body. Maps to `413`.
public struct DecompressedTooLarge: Error, Sendable, CustomStringConvertible {
    public var limit: Int
    public var description: String { "decompressed body is over the limit of \(limit) bytes" }
}

/// The compressed input is not valid for its coding. Maps to `400`.
public struct CorruptCompressedData: Error, Sendable, CustomStringConvertible {
    public var coding: ContentCoding
    /// The data was valid but the stream did not end (a truncated body).
    public var truncated = false
    public init(coding: ContentCoding, truncated: Bool = false) {
        self.coding = coding
        self.truncated = truncated
    }
    public var description: String {
        truncated ? "body ends before its \(coding.rawValue) stream does (truncated)" : "body is not valid \(coding.rawValue) data"
    }
}

/// Incremental decompression with a hard bound on the total output, so a zip
/// bomb ends in a named error after at most `outputBytesMax` bytes, never in
/// unbounded memory. Output comes in chunks of at most `chunkBytes`.
public final class BoundedDecompressor {
    public let coding: ContentCoding
    public let outputBytesMax: Int
    private let chunkBytes: Int
    private let decompressor: ZlibDecompressor
    public private(set) var outputBytes = 0
    public private(set) var ended = false

    public init(_ coding: ContentCoding, outputBytesMax: Int, chunkBytes: Int = 64 * 1024) throws {
        self.coding = coding
        self.outputBytesMax = outputBytesMax
        self.chunkBytes = chunkBytes
        self.decompressor = try ZlibDecompressor(algorithm: coding.zlibAlgorithm)
    }

    /// Feeds compressed bytes; calls `emit` with each decompressed chunk.
    public func decompress(_ input: ByteBuffer, emit: (ByteBuffer) throws -> Void) throws {
        var input = input
        // A full output chunk goes round again even when all the input is
        // taken: zlib may still hold output for input it has read (the rest
        // of a long match), which would otherwise be lost at the end of the
        // body (found by Fuzz/FuzzCompressedBody).
        var outputFull = false
        while (input.readableBytes > 0 || outputFull) && !ended {
            outputFull = false
            var output = ByteBuffer()
            output.reserveCapacity(chunkBytes)
            var needMoreInput = false
            do {
                try decompressor.inflate(from: &input, to: &output)
                // Z_OK with space left, or Z_STREAM_END: all input taken that can be.
                if input.readableBytes > 0 && output.readableBytes == 0 { ended = true }
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // Output chunk full; loop for more.
                outputFull = true
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                needMoreInput = true
            } catch {
                throw CorruptCompressedData(coding: coding)
            }
            outputBytes += output.readableBytes
            if outputBytes > outputBytesMax { throw DecompressedTooLarge(limit: outputBytesMax) }
            if output.readableBytes > 0 { try emit(output) }
            if needMoreInput { break }
        }
    }

    /// The body ended: throws `CorruptCompressedData` unless the compressed
    /// stream ended properly (a truncated gzip body is not a shorter body).
    public func finish() throws {
        if ended { return }
        // zlib answers Z_STREAM_END again for a finished stream, and
        // Z_BUF_ERROR (no input, no progress) for one cut short.
        var empty = ByteBuffer()
        empty.reserveCapacity(1)
        var output = ByteBuffer()
        output.reserveCapacity(1)
        do {
            try decompressor.inflate(from: &empty, to: &output)
        } catch {
            throw CorruptCompressedData(coding: coding, truncated: true)
        }
        if output.readableBytes > 0 { throw CorruptCompressedData(coding: coding, truncated: true) }
        ended = true
    }
}
