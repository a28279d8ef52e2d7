// The gzip/deflate request path: `BoundedDecompressor` for the coding the
// first byte picks, with a 1 MiB output limit and a chunk size the input
// picks, fed the body in random-sized chunks, as a streamed request arrives.
// Properties: no trap; the only errors are `DecompressedTooLarge` and
// `CorruptCompressedData`; the output never passes the limit (bytes emitted
// and the `outputBytes` count); chunking does not change the output.
import CompressNIO
import FuzzSupport
import NIOCore
import PiglixWire

let outputBytesMax = 1 << 20

// Outputs are ByteBuffers: appended and compared with memcpy and memcmp,
// not byte by byte in instrumented code (a bomb emits a whole MiB).
enum Outcome: Equatable {
    case output(ByteBuffer)
    case tooLarge
    case corrupt
}

func run(_ coding: ContentCoding, chunkBytes: Int, _ pieces: [ByteBuffer]) -> (Outcome, ByteBuffer) {
    let decompressor = try! BoundedDecompressor(coding, outputBytesMax: outputBytesMax, chunkBytes: chunkBytes)
    var output = ByteBuffer()
    do {
        for piece in pieces {
            try decompressor.decompress(piece) { chunk in
                var chunk = chunk
                output.writeBuffer(&chunk)
                check(output.readableBytes <= outputBytesMax, "emitted \(output.readableBytes) bytes, over the limit")
            }
        }
        check(decompressor.outputBytes == output.readableBytes, "counted \(decompressor.outputBytes), emitted \(output.readableBytes)")
        return (.output(output), output)
    } catch is DecompressedTooLarge {
        check(decompressor.outputBytes > outputBytesMax, "too large at \(decompressor.outputBytes) bytes")
        return (.tooLarge, output)
    } catch is CorruptCompressedData {
        return (.corrupt, output)
    } catch {
        fuzzFailure("unexpected error \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let coding: ContentCoding = control & 1 == 0 ? .gzip : .deflate
    let chunkBytes = control & 2 == 0 ? 64 * 1024 : 1 << Int(control >> 2 & 7)
    let body = input.rest()
    let (whole, wholeOutput) = run(coding, chunkBytes: chunkBytes, [ByteBuffer(bytes: body)])
    let (pieces, piecesOutput) = run(coding, chunkBytes: chunkBytes, chunks(body, seed: control >> 2 | 1))
    // Where both read the whole body without error, they produced the same bytes;
    // whatever either emitted before an error is a prefix of the true output.
    if case .output = whole, case .output = pieces {
        check(whole == pieces, "chunked output differs from whole-body output")
    } else {
        let n = min(wholeOutput.readableBytes, piecesOutput.readableBytes)
        check(wholeOutput.getSlice(at: 0, length: n) == piecesOutput.getSlice(at: 0, length: n), "outputs disagree before an error")
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

func seeds() -> [[UInt8]] {
    let texts: [[UInt8]] = [
        Array(#"{"topic":"a.b","data":"hello"}"#.utf8) + [10] + Array(#"{"topic":"a.c","data":"x"}"#.utf8) + [10],
        Array(repeating: UInt8(ascii: "a"), count: 4000),
        (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) },
        [],
    ]
    var out: [[UInt8]] = []
    for text in texts {
        for coding in ContentCoding.allCases {
            let compressor = try! StreamCompressor(coding)
            var compressed = try! compressor.compress(ByteBuffer(bytes: text)).bytes
            compressed += try! compressor.finish().bytes
            let codingBit: UInt8 = coding == .gzip ? 0 : 1
            out.append([codingBit] + compressed)
            out.append([codingBit | 2 | 0x10] + compressed)
        }
    }
    // A small bomb: zeros that inflate past the 1 MiB limit.
    var zeros = ByteBuffer(repeating: 0, count: 2 << 20)
    let bomb = try! zeros.compress(with: .gzip())
    out.append([0] + bomb.bytes)
    return out
}

