import Benchmark
import NIOCore
import PiglixTopics
import PiglixWire

/// The wire formats of a publish and a delivery (PiglixWire), 1,000 records
/// of 128 bytes on one topic per iteration.
func wireBenchmarks() {
    let records = (0..<batchRecords).map { _ in PublishRecord(topic: "bench.wire.topic", payload: benchPayload()) }
    var frames = ByteBuffer()
    for record in records { record.encodeFrame(into: &frames) }
    var ndjsonLines: [ByteBuffer] = []
    for record in records {
        var line = ByteBuffer()
        record.encodeJSON(into: &line)
        ndjsonLines.append(line)
    }

    Benchmark("publish frame encode, 1000 records") { benchmark in
        for _ in benchmark.scaledIterations {
            var out = ByteBuffer()
            out.reserveCapacity(frames.readableBytes)
            for record in records { record.encodeFrame(into: &out) }
            blackHole(out)
        }
    }
    Benchmark("publish frame decode, 1000 records (FrameDecoder + decodeFrame)") { benchmark in
        for _ in benchmark.scaledIterations {
            var decoder = FrameDecoder(bodyBytesMax: 1 << 20)
            decoder.append(frames)
            while let frame = try! decoder.next() {
                blackHole(try! PublishRecord.decodeFrame(frame.body))
            }
        }
    }
    Benchmark("NDJSON publish record decode, 1000 lines") { benchmark in
        for _ in benchmark.scaledIterations {
            for line in ndjsonLines { blackHole(try! PublishRecord.decodeJSON(line)) }
        }
    }
    Benchmark("message frame encode (subscriber side), 1000 messages") { benchmark in
        let payload = benchPayload()
        for _ in benchmark.scaledIterations {
            var out = ByteBuffer()
            out.reserveCapacity(batchRecords * 200)
            for sequence in 0..<UInt64(batchRecords) {
                RecordEncoder.writeMessage(
                    format: .binary, topic: "bench.wire.topic", id: MessageID(epoch: 1, sequence: sequence), delivery: .fifo,
                    headers: [], payload: payload, payloadIsText: false, into: &out)
            }
            blackHole(out)
        }
    }
}

/// A 128-byte payload, as the benches send.
func benchPayload() -> ByteBuffer { ByteBuffer(repeating: UInt8(ascii: "x"), count: 128) }
