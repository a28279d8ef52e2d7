import Foundation
import CompressNIO
import NIOCore
import PiglixTopics
import PiglixWire
import XCTest

final class FrameTests: XCTestCase {
    func testPublishFrameRoundTripsThroughDecoderInPieces() throws {
        let record = PublishRecord(
            topic: "a.b", payload: ByteBuffer(bytes: [0, 1, 2, 255]), delivery: .safe,
            headers: [MessageHeader(name: "k", value: "v")])
        var wire = ByteBuffer()
        record.encodeFrame(into: &wire)
        record.encodeFrame(into: &wire)
        var decoder = FrameDecoder(bodyBytesMax: 1024)
        var frames: [Frame] = []
        // Feed one byte at a time: frames must come out whole and only when complete.
        while let byte = wire.readSlice(length: 1) {
            decoder.append(byte)
            while let frame = try decoder.next() { frames.append(frame) }
        }
        XCTAssertEqual(frames.count, 2)
        let decoded = try PublishRecord.decodeFrame(frames[0].body)
        XCTAssertEqual(decoded.topic, "a.b")
        XCTAssertEqual(decoded.delivery, .safe)
        XCTAssertEqual(decoded.headers, [MessageHeader(name: "k", value: "v")])
        XCTAssertEqual(Array(decoded.payload.readableBytesView), [0, 1, 2, 255])
    }

    func testOversizeFrameIsRefusedFromItsHeaderAlone() {
        var decoder = FrameDecoder(bodyBytesMax: 10)
        var header = ByteBuffer()
        header.writeInteger(FrameType.publish.rawValue)
        header.writeInteger(UInt32.max)
        decoder.append(header)
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? FrameError, .tooLarge(length: Int(UInt32.max), max: 10)) }
    }

    func testMessageFrameDecodesForClients() throws {
        var out = ByteBuffer()
        let id = MessageID(epoch: 0xABCD, sequence: 42)
        RecordEncoder.writeMessage(
            format: .binary, topic: "t.x", id: id, delivery: .total, headers: [], payload: ByteBuffer(string: "hi"),
            payloadIsText: true, into: &out)
        var decoder = FrameDecoder(bodyBytesMax: 100)
        decoder.append(out)
        guard case .message(let message) = try DeliveredRecord.decode(frame: try XCTUnwrap(decoder.next())) else {
            return XCTFail("not a message")
        }
        XCTAssertEqual(message.id, "0000abcd-42")
        XCTAssertEqual(message.topic, "t.x")
        XCTAssertEqual(message.delivery, .total)
        XCTAssertEqual(String(buffer: message.payload), "hi")
    }

    func testAcksRoundTripInBothFormats() throws {
        for binary in [true, false] {
            var out = ByteBuffer()
            AckCodec.writeOK(id: MessageID(epoch: 1, sequence: 9), delivery: .fifo, status: 202, binary: binary, into: &out)
            AckCodec.writeError(status: 413, error: "too \"big\"", binary: binary, into: &out)
            var acks: [PublishAck] = []
            if binary {
                var decoder = FrameDecoder(bodyBytesMax: 100)
                decoder.append(out)
                while let frame = try decoder.next() { acks.append(try AckCodec.decodeFrame(frame.body)) }
            } else {
                var lines = LineSplitter(lineBytesMax: 100)
                lines.append(out)
                while case .line(let line)? = lines.next() { acks.append(try AckCodec.decodeJSON(line)) }
            }
            XCTAssertEqual(acks, [
                PublishAck(status: 202, id: "00000001-9", delivery: .fifo),
                PublishAck(status: 413, error: "too \"big\""),
            ], "binary: \(binary)")
        }
    }
}

final class RecordTests: XCTestCase {
    func testNDJSONMessageRecordHasTheDesignFields() {
        var out = ByteBuffer()
        RecordEncoder.writeMessage(
            format: .ndjson, topic: "sensors.paris.temp", id: MessageID(epoch: 1, sequence: 2), delivery: .fifo,
            headers: [], payload: ByteBuffer(string: "line\n\"q\""), payloadIsText: true, into: &out)
        XCTAssertEqual(
            String(buffer: out),
            #"{"type":"message","topic":"sensors.paris.temp","id":"00000001-2","delivery":"fifo","data":"line\n\"q\""}"# + "\n")
    }

    func testBinaryPayloadGoesAsBase64() {
        var out = ByteBuffer()
        RecordEncoder.writeMessage(
            format: .ndjson, topic: "a", id: MessageID(epoch: 1, sequence: 2), delivery: .safe,
            headers: [MessageHeader(name: "h", value: "v")], payload: ByteBuffer(bytes: [0xFF, 0x00]), payloadIsText: false, into: &out)
        XCTAssertEqual(
            String(buffer: out),
            #"{"type":"message","topic":"a","id":"00000001-2","delivery":"safe","headers":{"h":"v"},"data_b64":"/wA="}"# + "\n")
    }

    func testSSEEventCarriesTypeIdAndJSON() {
        var out = ByteBuffer()
        RecordEncoder.writeMessage(
            format: .sse, topic: "a", id: MessageID(epoch: 1, sequence: 3), delivery: .fifo, headers: [],
            payload: ByteBuffer(string: "x"), payloadIsText: true, into: &out)
        RecordEncoder.writeControl(.gap(lost: 12, reason: "slow consumer"), format: .sse, into: &out)
        XCTAssertEqual(String(buffer: out), """
            event: message
            id: 00000001-3
            data: {"type":"message","topic":"a","id":"00000001-3","delivery":"fifo","data":"x"}

            event: gap
            data: {"type":"gap","lost":12,"reason":"slow consumer"}


            """)
    }

    func testControlRecordsMatchDesign() {
        var out = ByteBuffer()
        RecordEncoder.writeControl(.view(group: "sensors.*.temp", view: 7, members: ["n1", "n2"], primary: true), format: .ndjson, into: &out)
        RecordEncoder.writeControl(.heartbeat, format: .ndjson, into: &out)
        XCTAssertEqual(String(buffer: out), """
            {"type":"view","group":"sensors.*.temp","view":7,"members":["n1","n2"],"primary":true}
            {"type":"heartbeat"}

            """)
    }

    func testPublishRecordParsingAndErrors() throws {
        let record = try PublishRecord.decodeJSON(ByteBuffer(string: #"{"topic":"a.b","data":"h\u00e9\ud83d\ude00","delivery":"total","headers":{"x":"y"}}"#))
        XCTAssertEqual(record.topic, "a.b")
        XCTAssertEqual(String(buffer: record.payload), "hé😀")
        XCTAssertEqual(record.delivery, .total)
        XCTAssertEqual(record.headers, [MessageHeader(name: "x", value: "y")])
        let binary = try PublishRecord.decodeJSON(ByteBuffer(string: #"{"topic":"a","data_b64":"AAEC"}"#))
        XCTAssertEqual(Array(binary.payload.readableBytesView), [0, 1, 2])

        let cases: [(String, String)] = [
            (#"{"topic":"a"}"#, "the record has neither \"data\" nor \"data_b64\""),
            (#"{"data":"x"}"#, "the record has no \"topic\""),
            (#"{"topic":"a","data":"x","delivery":"fast"}"#, "\"delivery\" must be \"fifo\", \"total\" or \"safe\""),
            (#"{"topic":"a","data_b64":"***"}"#, "\"data_b64\" is not valid base64"),
            (#"[1]"#, "a publish record is a JSON object, not an array"),
            (#"{"topic":"a","data":"x"} trailing"#, "malformed JSON at byte 26: unexpected data after the value"),
        ]
        for (line, reason) in cases {
            XCTAssertThrowsError(try PublishRecord.decodeJSON(ByteBuffer(string: line)), line) {
                XCTAssertEqual(($0 as? RecordError)?.reason, reason, line)
            }
        }
    }

    func testMessageIDTextRoundTrips() {
        let id = MessageID(epoch: 0x5F3A09C1, sequence: 1042)
        XCTAssertEqual(id.description, "5f3a09c1-1042")
        XCTAssertEqual(MessageID("5f3a09c1-1042"), id)
        XCTAssertNil(MessageID("5f3a09c1"))
        // Cluster form: a delivery position, any node can resume from it.
        let clusterID = MessageID(sequence: 5, position: ClusterPosition(view: 7, delivered: [120, 0, 33]))
        XCTAssertEqual(clusterID.description, "v7.120.0.33")
        XCTAssertEqual(ByteBuffer.messageIDLength(clusterID), "v7.120.0.33".utf8.count)
        XCTAssertEqual(MessageID("v7.120.0.33")?.position, ClusterPosition(view: 7, delivered: [120, 0, 33]))
        XCTAssertNil(MessageID("v7..3"))
        XCTAssertNil(MessageID("vx"))
        let position = ClusterPosition(view: 7, delivered: [120, 0, 33])
        XCTAssertTrue(position.covers(view: 6, origin: 3, seq: 999), "earlier views are covered (P3)")
        XCTAssertTrue(position.covers(view: 7, origin: 2, seq: 33))
        XCTAssertFalse(position.covers(view: 7, origin: 2, seq: 34))
        XCTAssertFalse(position.covers(view: 7, origin: 3, seq: 1))
        XCTAssertFalse(position.covers(view: 8, origin: 0, seq: 1))
        XCTAssertNil(MessageID("zzzzzzzz-1"))
        XCTAssertNil(MessageID("5f3a09c1-99999999999999999999999"))
    }

    func testBase64RoundTripsAllLengths() {
        for length in 0..<10 {
            let bytes = (0..<length).map { UInt8($0 * 37 & 0xFF) }
            var encoded = ByteBuffer()
            bytes.withUnsafeBytes { Base64.encode($0, into: &encoded) }
            var decoded = ByteBuffer()
            XCTAssertTrue(Base64.decode(encoded.readableBytesView, into: &decoded))
            XCTAssertEqual(Array(decoded.readableBytesView), bytes)
        }
    }
}

final class LineSplitterTests: XCTestCase {
    func testOverlongLineIsReportedOnceAndTheStreamGoesOn() {
        var splitter = LineSplitter(lineBytesMax: 8)
        splitter.append(ByteBuffer(string: "ok\n" + String(repeating: "x", count: 5)))
        guard case .line(let first)? = splitter.next() else { return XCTFail() }
        XCTAssertEqual(String(buffer: first), "ok")
        XCTAssertNil(splitter.next())
        // The long line arrives in pieces: never buffered past the limit.
        for _ in 0..<100 {
            splitter.append(ByteBuffer(string: String(repeating: "y", count: 100)))
            XCTAssertNil(splitter.next())
            XCTAssertLessThanOrEqual(splitter.bufferedBytes, 108)
        }
        splitter.append(ByteBuffer(string: "z\r\nnext\n"))
        guard case .tooLong(let bytes)? = splitter.next() else { return XCTFail() }
        XCTAssertEqual(bytes, 5 + 100 * 100 + 2)
        guard case .line(let next)? = splitter.next() else { return XCTFail() }
        XCTAssertEqual(String(buffer: next), "next")
    }
}

final class CompressionTests: XCTestCase {
    /// Each batch sent through one stream compressor decodes completely as
    /// soon as its bytes arrive, before the stream ends (sync flush).
    func testEachCompressedBatchDecodesOnArrival() throws {
        for coding in ContentCoding.allCases {
            let compressor = try StreamCompressor(coding)
            let decompressor = try BoundedDecompressor(coding, outputBytesMax: 1 << 20)
            for batch in 0..<20 {
                let text = String(repeating: "{\"batch\":\(batch)}\n", count: batch + 1)
                let compressed = try compressor.compress(ByteBuffer(string: text))
                var decoded = ""
                try decompressor.decompress(compressed) { decoded += String(buffer: $0) }
                XCTAssertEqual(decoded, text, "\(coding) batch \(batch)")
            }
            var rest = ""
            try decompressor.decompress(try compressor.finish()) { rest += String(buffer: $0) }
            XCTAssertEqual(rest, "")
        }
    }

    func testDecompressionBombStopsAtTheLimit() throws {
        // 64 MiB of zeros compresses to about 64 KiB.
        var zeros = ByteBuffer(repeating: 0, count: 64 << 20)
        let bomb = try zeros.compress(with: .gzip())
        XCTAssertLessThan(bomb.readableBytes, 200_000)
        let decompressor = try BoundedDecompressor(.gzip, outputBytesMax: 1 << 20)
        var seen = 0
        XCTAssertThrowsError(try decompressor.decompress(bomb) { seen += $0.readableBytes }) {
            XCTAssertTrue($0 is DecompressedTooLarge)
        }
        XCTAssertLessThanOrEqual(seen, 1 << 20)
    }

    func testCorruptInputIsNamed() throws {
        let decompressor = try BoundedDecompressor(.gzip, outputBytesMax: 1000)
        XCTAssertThrowsError(try decompressor.decompress(ByteBuffer(string: "definitely not gzip")) { _ in }) {
            XCTAssertTrue($0 is CorruptCompressedData)
        }
    }

    /// Regression (Fuzz/crashes/FuzzCompressedBody/lost-tail-of-output):
    /// a body whose last input byte is taken while zlib still holds more
    /// than a chunk of output. Its tail was lost when the body came in one
    /// piece, and arrived only with a later piece when it came in several.
    func testOutputHeldByZlibWhenTheInputRunsOutIsEmitted() throws {
        let body: [UInt8] =
            [
                0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x03, 0xec, 0xd0, 0xc1, 0x00, 0x00, 0x00, 0x00, 0x03,
                0x21, 0xd6, 0xf3, 0x97, 0x18, 0xc6, 0x3e, 0x85, 0x50,
            ] + Array(repeating: 0, count: 64)
        var whole = 0
        try BoundedDecompressor(.gzip, outputBytesMax: 1 << 20).decompress(ByteBuffer(bytes: body)) { whole += $0.readableBytes }
        var pieces = 0
        let decompressor = try BoundedDecompressor(.gzip, outputBytesMax: 1 << 20)
        for byte in body { try decompressor.decompress(ByteBuffer(bytes: [byte])) { pieces += $0.readableBytes } }
        XCTAssertEqual(whole, 66_049)
        XCTAssertEqual(pieces, 66_049)
        XCTAssertEqual(decompressor.outputBytes, 66_049)
    }

    /// The same with a body from the real compressor: every byte of a large,
    /// very compressible body comes out whatever the output chunk size.
    func testCompressibleBodyDecompressesWholeWithSmallChunks() throws {
        let text = ByteBuffer(repeating: UInt8(ascii: "a"), count: 300_000)
        for coding in ContentCoding.allCases {
            let compressor = try StreamCompressor(coding)
            var compressed = try compressor.compress(text)
            var end = try compressor.finish()
            compressed.writeBuffer(&end)
            for chunkBytes in [1000, 4096, 64 * 1024] {
                var output = ByteBuffer()
                let decompressor = try BoundedDecompressor(coding, outputBytesMax: 1 << 20, chunkBytes: chunkBytes)
                try decompressor.decompress(compressed) { chunk in
                    var chunk = chunk
                    output.writeBuffer(&chunk)
                }
                XCTAssertEqual(output, text, "\(coding), chunks of \(chunkBytes)")
            }
        }
    }

    func testAcceptEncodingNegotiation() {
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "gzip, deflate, br"), .gzip)
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "deflate"), .deflate)
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "gzip;q=0.5, deflate"), .deflate)
        XCTAssertNil(ContentCoding.negotiate(acceptEncoding: "br, identity"))
        XCTAssertNil(ContentCoding.negotiate(acceptEncoding: "gzip;q=0"))
    }
}

/// The hot-path writers (one raw write per frame head) against the plain
/// field-by-field layout of docs/protocol.md, byte for byte.
final class HotPathWireTests: XCTestCase {
    func testMessageAndAckFramesMatchTheFieldByFieldLayout() {
        let headerSets: [[MessageHeader]] = [[], [MessageHeader(name: "k", value: "v"), MessageHeader(name: "é", value: "")]]
        for sequence: UInt64 in [0, 9, 10, 99, 1042, 999_999, 1_000_000, .max] {
            let id = MessageID(epoch: 0x5F3A_09C1, sequence: sequence)
            let idText = "5f3a09c1-\(sequence)"
            XCTAssertEqual(id.description, idText)
            XCTAssertEqual(ByteBuffer.messageIDLength(id), idText.utf8.count)
            for headers in headerSets {
                var fast = ByteBuffer(string: "prefix")
                RecordEncoder.writeMessage(
                    format: .binary, topic: "bench.1to1.topic-über", id: id, delivery: .total, headers: headers,
                    payload: ByteBuffer(bytes: [0, 1, 2, 255]), payloadIsText: false, into: &fast)
                var plain = ByteBuffer(string: "prefix")
                let lengthIndex = plain.beginFrame(.message)
                plain.writeInteger(DeliveryLevel.total.rawValue)
                plain.writeShortString("bench.1to1.topic-über")
                plain.writeShortString(idText)
                plain.writeInteger(UInt8(headers.count))
                for header in headers {
                    plain.writeShortString(header.name)
                    plain.writeShortString(header.value)
                }
                plain.writeBytes([0, 1, 2, 255])
                plain.endFrame(at: lengthIndex)
                XCTAssertEqual(fast, plain, "message frame, sequence \(sequence), \(headers.count) headers")
            }
            var fastAck = ByteBuffer()
            AckCodec.writeOK(id: id, delivery: .safe, status: 200, binary: true, into: &fastAck)
            var plainAck = ByteBuffer()
            let lengthIndex = plainAck.beginFrame(.ack)
            plainAck.writeInteger(UInt16(200))
            plainAck.writeShortString(idText)
            plainAck.writeInteger(DeliveryLevel.safe.rawValue)
            plainAck.writeInteger(UInt16(0))
            plainAck.endFrame(at: lengthIndex)
            XCTAssertEqual(fastAck, plainAck, "ack frame, sequence \(sequence)")
            XCTAssertEqual(try AckCodec.decodeFrameStatus(plainAck.getSlice(at: 5, length: plainAck.readableBytes - 5)!), 200)
        }
        XCTAssertThrowsError(try AckCodec.decodeFrameStatus(ByteBuffer(bytes: [0, 202])))
    }

    func testFramesComeOutWholeWhateverTheChunking() throws {
        var wire = ByteBuffer()
        var expected: [String] = []
        for index in 0..<300 {
            let payload = String(repeating: "p", count: index % 40)
            PublishRecord(topic: "t.\(index)", payload: ByteBuffer(string: payload)).encodeFrame(into: &wire)
            expected.append("t.\(index) \(payload)")
        }
        var generator = SystemRandomNumberGenerator()
        for round in 0..<50 {
            var decoder = FrameDecoder(bodyBytesMax: 1024)
            var rest = wire
            var seen: [String] = []
            while rest.readableBytes > 0 {
                let size = min(rest.readableBytes, round == 0 ? 1 : Int.random(in: 1...200, using: &generator))
                decoder.append(rest.readSlice(length: size)!)
                // Sometimes a second chunk arrives before the first is drained.
                if Bool.random(using: &generator), rest.readableBytes > 0 {
                    decoder.append(rest.readSlice(length: min(rest.readableBytes, Int.random(in: 1...50, using: &generator)))!)
                }
                while let frame = try decoder.next() {
                    let record = try PublishRecord.decodeFrame(frame.body)
                    seen.append("\(record.topic) \(String(buffer: record.payload))")
                }
            }
            XCTAssertEqual(seen, expected, "round \(round)")
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
        // An oversize frame is refused once its header is whole, across chunks too.
        var decoder = FrameDecoder(bodyBytesMax: 10)
        decoder.append(ByteBuffer(bytes: [FrameType.publish.rawValue, 0, 0]))
        XCTAssertNil(try decoder.next())
        decoder.append(ByteBuffer(bytes: [0, 11, 1, 2, 3]))
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? FrameError, .tooLarge(length: 11, max: 10)) }
    }

    func testDecimalsAndIDsGrowTheBufferThemselves() {
        var out = ByteBuffer()
        for value: UInt64 in [0, 7, 10, 12345, .max] { out.writeDecimal(value); out.writeString(",") }
        XCTAssertEqual(String(buffer: out), "0,7,10,12345,\(UInt64.max),")
        // Many ids into a buffer that starts with no room.
        var ids = ByteBuffer()
        for sequence in 0..<2000 { ids.writeMessageID(MessageID(epoch: 1, sequence: UInt64(sequence))) }
        XCTAssertEqual(ids.readableBytes, (0..<2000).reduce(0) { $0 + 9 + String($1).utf8.count })
    }

    func testUTF8CheckAgreesWithTheStandardLibrary() {
        let cases: [[UInt8]] = [
            [], Array("plain ascii text, more than eight bytes".utf8), Array("héllo wörld €𝄞".utf8),
            [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0xFF], [0x80], [0xE2, 0x82], Array("abcdefgh".utf8) + [0xE2, 0x82],
            Array("12345678".utf8) + [0xC3, 0xA9] + Array("12345678".utf8),
        ]
        for bytes in cases {
            XCTAssertEqual(UTF8Check.isValid(ByteBuffer(bytes: bytes)), String(validating: bytes, as: UTF8.self) != nil, "\(bytes)")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let length = Int.random(in: 0..<24, using: &generator)
            // Bias toward bytes that make multi-byte sequences.
            let bytes = (0..<length).map { _ in
                Bool.random(using: &generator) ? UInt8.random(in: 0x80...0xF5, using: &generator) : UInt8.random(in: 0...0x7F, using: &generator)
            }
            XCTAssertEqual(UTF8Check.isValid(ByteBuffer(bytes: bytes)), String(validating: bytes, as: UTF8.self) != nil, "\(bytes)")
        }
        // A timestamp at the front of a text payload (the bench's) is not text.
        var payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: 128)
        payload.setInteger(UInt64(0x0123_4567_89AB_CDEF), at: 0)
        XCTAssertFalse(UTF8Check.isValid(payload))
    }

    func testSubscribeDecoderReusesARepeatedTopicAndNoticesAChange() throws {
        var out = ByteBuffer()
        for (index, topic) in ["sensors.paris.temperature", "sensors.paris.temperature", "sensors.lyon.temperature", "a"].enumerated() {
            RecordEncoder.writeMessage(
                format: .binary, topic: topic, id: MessageID(epoch: 2, sequence: UInt64(index)), delivery: .fifo, headers: [],
                payload: ByteBuffer(string: "p\(index)"), payloadIsText: true, into: &out)
        }
        var decoder = FrameDecoder(bodyBytesMax: 1024)
        decoder.append(out)
        var topics = TopicReuse()
        var seen: [String] = []
        while let frame = try decoder.next() {
            guard case .message(let message) = try DeliveredRecord.decode(frame: frame, topics: &topics) else { return XCTFail("not a message") }
            seen.append("\(message.topic) \(message.id) \(String(buffer: message.payload))")
        }
        XCTAssertEqual(seen, [
            "sensors.paris.temperature 00000002-0 p0", "sensors.paris.temperature 00000002-1 p1",
            "sensors.lyon.temperature 00000002-2 p2", "a 00000002-3 p3",
        ])
    }
}

/// Idempotent publish fields (docs/protocol.md, "Idempotent publish").
final class IdempotentRecordTests: XCTestCase {
    func testNDJSONTakesProducerAndSequenceUnderBothNames() throws {
        for line in [
            #"{"topic":"a.b","data":"x","producer":"billing:7","sequence":42}"#,
            #"{"topic":"a.b","data":"x","Piglix-Producer":"billing:7","Piglix-Sequence":"42"}"#,
        ] {
            let record = try PublishRecord.decodeJSON(ByteBuffer(string: line))
            XCTAssertEqual(record.producer, "billing:7")
            XCTAssertEqual(record.sequence, 42)
        }
        let plain = try PublishRecord.decodeJSON(ByteBuffer(string: #"{"topic":"a.b","data":"x"}"#))
        XCTAssertNil(plain.producer)
        XCTAssertEqual(plain.sequence, 0)
    }

    func testNDJSONRefusesBadOrHalfIdempotenceFields() {
        let cases: [(String, String)] = [
            (#"{"topic":"a.b","data":"x","producer":"p"}"#, "needs Piglix-Sequence"),
            (#"{"topic":"a.b","data":"x","sequence":1}"#, "needs Piglix-Producer"),
            (#"{"topic":"a.b","data":"x","producer":"p","sequence":0}"#, "from 1"),
            (#"{"topic":"a.b","data":"x","producer":"p","sequence":-1}"#, "from 1"),
            (#"{"topic":"a.b","data":"x","producer":"p","sequence":1.5}"#, "from 1"),
            (#"{"topic":"a.b","data":"x","producer":"p","sequence":18446744073709551616}"#, "from 1"),
            (#"{"topic":"a.b","data":"x","producer":"a b","sequence":1}"#, "only letters"),
            (#"{"topic":"a.b","data":"x","producer":"","sequence":1}"#, "1 to 64 bytes"),
            ("{\"topic\":\"a.b\",\"data\":\"x\",\"producer\":\"\(String(repeating: "p", count: 65))\",\"sequence\":1}", "1 to 64 bytes"),
            (#"{"topic":"a.b","data":"x","producer":"p","Piglix-Producer":"q","sequence":1}"#, "once"),
        ]
        for (line, expected) in cases {
            XCTAssertThrowsError(try PublishRecord.decodeJSON(ByteBuffer(string: line)), line) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(line): \(error)")
            }
        }
    }

    func testBinaryPublishFrameCarriesProducerAndSequenceBehindAFlagBit() throws {
        let record = PublishRecord(
            topic: "a.b", payload: ByteBuffer(string: "hi"), delivery: .safe, headers: [MessageHeader(name: "k", value: "v")],
            producer: "p-1", sequence: UInt64.max)
        var wire = ByteBuffer()
        record.encodeFrame(into: &wire)
        XCTAssertEqual(wire.getInteger(at: 5, as: UInt8.self), 0x82, "delivery safe (2) with the idempotent flag (0x80)")
        let body = try XCTUnwrap(wire.getSlice(at: 5, length: wire.readableBytes - 5))
        let decoded = try PublishRecord.decodeFrame(body)
        XCTAssertEqual(decoded.producer, "p-1")
        XCTAssertEqual(decoded.sequence, UInt64.max)
        XCTAssertEqual(decoded.delivery, .safe)
        XCTAssertEqual(decoded.headers, record.headers)
        XCTAssertEqual(String(buffer: decoded.payload), "hi")
        // Truncated inside the producer or sequence: a clear error.
        let short = try XCTUnwrap(body.getSlice(at: body.readerIndex, length: body.readableBytes - 2 - 5))
        XCTAssertThrowsError(try PublishRecord.decodeFrame(short))
        // A frame without the flag is the old format, unchanged.
        var plain = ByteBuffer()
        PublishRecord(topic: "a.b", payload: ByteBuffer(string: "hi")).encodeFrame(into: &plain)
        XCTAssertEqual(plain.readableBytesView.map { $0 }, [1, 0, 0, 0, 9, 0, 0, 3, 97, 46, 98, 0, 104, 105])
    }
}

final class JSONStringTests: XCTestCase {
    /// Valid JSON, and one line of NDJSON for a Unicode-aware line splitter
    /// (Python's `splitlines` breaks at NEL, U+2028 and U+2029; schemathesis
    /// failed to read an error ack that echoed a NEL).
    func testLineBreakingCodePointsAreEscapedSoARecordStaysOnItsLine() throws {
        let text = "a\u{85}b\u{2028}c\u{2029}d\u{80}\u{9F}é€😀\r\n\"\\\u{1}\u{A0}\u{2027}\u{202A}"
        var out = ByteBuffer()
        out.writeJSONString(text)
        let encoded = String(buffer: out)
        XCTAssertEqual(encoded, #""a\u0085b\u2028c\u2029d\u0080\u009fé€😀\r\n\"\\\u0001"# + "\u{A0}\u{2027}\u{202A}\"")
        let decoded = try JSONSerialization.jsonObject(with: Data(encoded.utf8), options: .fragmentsAllowed) as? String
        XCTAssertEqual(decoded, text)
    }
}
