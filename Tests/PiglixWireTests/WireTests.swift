import CompressNIO
import NIOCore
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

    func testAcceptEncodingNegotiation() {
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "gzip, deflate, br"), .gzip)
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "deflate"), .deflate)
        XCTAssertEqual(ContentCoding.negotiate(acceptEncoding: "gzip;q=0.5, deflate"), .deflate)
        XCTAssertNil(ContentCoding.negotiate(acceptEncoding: "br, identity"))
        XCTAssertNil(ContentCoding.negotiate(acceptEncoding: "gzip;q=0"))
    }
}
