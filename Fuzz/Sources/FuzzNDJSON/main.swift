// The NDJSON publish path: the body in random-sized chunks through
// `LineSplitter` (the server's line limit, or a tiny one to reach the
// too-long path), then `PublishRecord.decodeJSON` on each line with the
// server's header limits. Properties: no trap; the lines match a plain
// split of the whole input; a decoded record re-encoded with `encodeJSON`
// decodes to the same record.
import FuzzSupport
import NIOCore
import PiglixTopics
import PiglixWire

/// `ServerSettings.recordBytesMax` with the default 1 MiB message limit.
let serverLineBytesMax = (1 << 20) / 3 * 4 + 64 * 1024

enum Expected: Equatable {
    case line([UInt8])
    case tooLong(Int)
}

/// The reference: what the splitter must produce from the whole input.
func reference(_ bytes: ArraySlice<UInt8>, max: Int) -> [Expected] {
    var out: [Expected] = []
    var segments = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    let last = segments.removeLast()
    for segment in segments {
        if segment.count > max {
            out.append(.tooLong(segment.count))
            continue
        }
        var line = segment
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        if !line.isEmpty { out.append(.line(Array(line))) }
    }
    if !last.isEmpty { out.append(last.count > max ? .tooLong(last.count) : .line(Array(last))) }
    return out
}

func same(_ a: PublishRecord, _ b: PublishRecord) -> Bool {
    a.topic == b.topic && a.payload == b.payload && a.delivery == b.delivery && a.headers == b.headers
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let lineBytesMax = control & 1 == 0 ? serverLineBytesMax : Int(control >> 1 & 63) + 1
    let body = input.rest()
    var splitter = LineSplitter(lineBytesMax: lineBytesMax)
    var items: [Expected] = []
    func take(_ item: LineSplitter.Item) {
        switch item {
        case .line(let line):
            check(line.readableBytes <= lineBytesMax, "line of \(line.readableBytes) bytes over \(lineBytesMax)")
            items.append(.line(line.bytes))
            decode(line)
        case .tooLong(let bytes):
            items.append(.tooLong(bytes))
        }
    }
    for chunk in chunks(body, seed: input.isEmpty ? 0 : control >> 1) {
        splitter.append(chunk)
        while let item = splitter.next() { take(item) }
        // Memory is bounded: what waits for its newline is never over the limit.
        check(splitter.bufferedBytes <= lineBytesMax, "splitter holds \(splitter.bufferedBytes) bytes, limit \(lineBytesMax)")
    }
    if let item = splitter.finish() { take(item) }
    check(splitter.finish() == nil, "finish twice gave an item")
    let expected = reference(body, max: lineBytesMax)
    check(items == expected, "splitter gave \(items), a plain split gives \(expected)")
    return 0
}

func decode(_ line: ByteBuffer) {
    guard let record = try? PublishRecord.decodeJSON(line, headerLimits: .default) else { return }
    var again = ByteBuffer()
    record.encodeJSON(into: &again)
    check(again.readableBytes > 0 && again.getInteger(at: again.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\n"), "no newline")
    again.moveWriterIndex(to: again.writerIndex - 1)
    do {
        let back = try PublishRecord.decodeJSON(again, headerLimits: .default)
        check(same(back, record), "record \(record) re-decoded as \(back)")
    } catch {
        fuzzFailure("record \(record) re-encodes as \(String(buffer: again)), which does not decode: \(error)")
    }
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
            topic: "a.b", payload: ByteBuffer(string: "q\"uote\\ \u{1}\n\t é 😀"),
            headers: [MessageHeader(name: "k", value: "v"), MessageHeader(name: "trace-id", value: "abc\"def")]),
        PublishRecord(topic: "orders.eu", payload: ByteBuffer(string: "x"), producer: "billing:7", sequence: 42),
    ]
    var out: [[UInt8]] = []
    var all = ByteBuffer()
    for record in records {
        var line = ByteBuffer()
        record.encodeJSON(into: &line)
        out.append([0] + line.bytes)
        all.writeImmutableBuffer(line)
    }
    out.append([0] + all.bytes)
    out.append([7] + all.bytes)
    out.append([0x41] + Array(all.bytes.map { $0 == UInt8(ascii: "\n") ? [UInt8(ascii: "\r"), $0] : [$0] }.joined()))
    let hand = [
        #"{"topic":"a.b","data_b64":"AAEC/w==","delivery":"fifo","headers":{}}"#,
        #"{"topic":"a.b","data":"\u00e9\ud83d\ude00\n","delivery":"safe"}"#,
        #"{"topic":"a.b","data":"x","data_b64":"eA=="}"#,
        #"{"topic":1,"data":[true,false,null,1.5e3,-0]}"#,
        #"[{"a":{"b":{"c":[]}}}]"#,
        "\n\n\r\n{\"topic\":\"a\",\"data\":\"\"}\r\n",
    ]
    for line in hand { out.append([0] + Array(line.utf8)) }
    out.append([3] + Array(hand.joined(separator: "\n").utf8))
    return out
}

