// The binary publish path: the body in random-sized chunks through
// `FrameDecoder` (the server's body limit, or a tiny one), `publish` frames
// parsed by `PublishRecord.decodeFrame` with the server's header limits.
// Properties: no trap; chunking does not change the frames cut nor where
// the stream fails; memory held is bounded by the limit; a decoded record
// re-encoded with `encodeFrame` decodes to the same record.
import FuzzSupport
import NIOCore
import PiglixTopics
import PiglixWire

/// `ServerSettings.recordBytesMax` with the default 1 MiB message limit.
let serverBodyBytesMax = (1 << 20) / 3 * 4 + 64 * 1024

enum Outcome: Equatable {
    case frame(UInt8, [UInt8])
    case failed(FrameError)
}

func run(_ pieces: [ByteBuffer], bodyBytesMax: Int) -> [Outcome] {
    var decoder = FrameDecoder(bodyBytesMax: bodyBytesMax)
    var out: [Outcome] = []
    for piece in pieces {
        decoder.append(piece)
        while true {
            do {
                guard let frame = try decoder.next() else { break }
                check(frame.body.readableBytes <= bodyBytesMax, "frame body of \(frame.body.readableBytes) bytes over \(bodyBytesMax)")
                out.append(.frame(frame.type.rawValue, frame.body.bytes))
            } catch {
                // The server ends the stream at the first framing error.
                out.append(.failed(error))
                return out
            }
        }
        check(
            decoder.bufferedBytes <= FrameHeader.size + bodyBytesMax + piece.readableBytes,
            "decoder holds \(decoder.bufferedBytes) bytes")
    }
    return out
}

func same(_ a: PublishRecord, _ b: PublishRecord) -> Bool {
    a.topic == b.topic && a.payload == b.payload && a.delivery == b.delivery && a.headers == b.headers
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let bodyBytesMax = control & 1 == 0 ? serverBodyBytesMax : Int(control >> 1 & 63)
    let body = input.rest()
    let chunked = run(chunks(body, seed: control >> 1), bodyBytesMax: bodyBytesMax)
    let whole = run([ByteBuffer(bytes: body)], bodyBytesMax: bodyBytesMax)
    check(chunked == whole, "chunked input gave \(chunked), whole input \(whole)")
    for case .frame(let type, let bytes) in whole where type == FrameType.publish.rawValue {
        guard let record = try? PublishRecord.decodeFrame(ByteBuffer(bytes: bytes), headerLimits: .default) else { continue }
        var again = ByteBuffer()
        record.encodeFrame(into: &again)
        var decoder = FrameDecoder(bodyBytesMax: .max)
        decoder.append(again)
        do {
            guard let frame = try decoder.next() else { fuzzFailure("re-encoded \(record) is not a whole frame") }
            check(frame.type == .publish && decoder.bufferedBytes == 0, "re-encoded \(record) framed wrongly")
            let back = try PublishRecord.decodeFrame(frame.body, headerLimits: .default)
            check(same(back, record), "record \(record) re-decoded as \(back)")
        } catch {
            fuzzFailure("record \(record) re-encodes to a frame that does not decode: \(error)")
        }
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

func seeds() -> [[UInt8]] {
    let records = [
        PublishRecord(topic: "a.b", payload: ByteBuffer(string: "hello")),
        PublishRecord(topic: "sensors.paris.temp", payload: ByteBuffer(string: "21.5"), delivery: .safe),
        PublishRecord(topic: "orders.eu", payload: ByteBuffer(bytes: [0, 1, 2, 255, 0x80]), delivery: .total),
        PublishRecord(
            topic: "a.b", payload: ByteBuffer(),
            headers: [MessageHeader(name: "k", value: "v"), MessageHeader(name: "trace-id", value: "abc")]),
        // Idempotent publish: the 0x80 flag, producer and sequence after the headers.
        PublishRecord(
            topic: "orders.eu", payload: ByteBuffer(string: "x"), delivery: .safe, headers: [MessageHeader(name: "k", value: "v")],
            producer: "billing:7", sequence: 42),
    ]
    var out: [[UInt8]] = []
    var all = ByteBuffer()
    for record in records {
        var frame = ByteBuffer()
        record.encodeFrame(into: &frame)
        out.append([0] + frame.bytes)
        all.writeImmutableBuffer(frame)
    }
    // Control bytes pick other chunkings and a tiny body limit.
    for control: UInt8 in [0, 2, 6, 0x21, 0x7F] { out.append([control] + all.bytes) }
    // The other frame types, as the server sends them.
    var other = ByteBuffer()
    for type: UInt8 in [2, 3, 4] {
        let at = other.beginFrame(FrameType(rawValue: type)!)
        other.writeShortString("{\"event\":\"heartbeat\"}")
        other.endFrame(at: at)
    }
    out.append([4] + other.bytes + all.bytes)
    out.append([0] + [9, 0, 0, 0, 1, 0])
    out.append([0] + [1, 0xFF, 0xFF, 0xFF, 0xFF])
    return out
}

