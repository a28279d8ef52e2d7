import Foundation
import NIOCore
import PiglixTestKit
import PiglixWire
import XCTest

/// Work queue streams in every format (docs/protocol.md, "Work queues").
final class WorkQueueStreamTests: XCTestCase {
    func testBinaryQueueStreamCarriesQueueRecordsInEventFramesThatDecodeAsMessages() async throws {
        let live = try await LiveServer.start()
        let a = try CurlStream(["--http2-prior-knowledge", "-H", "Accept: \(binaryFramesMediaType)", "\(live.base)/v1/subscribe?topic=bin.*&queue=q1"])
        try await poll("the member joined") {
            Curl.request(["--http2-prior-knowledge", "\(live.base)/metrics"]).body.contains("piglix_queue_members 1\n")
        }
        _ = try Curl.run(["--http2-prior-knowledge", "--data-binary", "@-", "\(live.base)/v1/topics/bin.x"], stdin: Data([0, 159, 146, 150]))
        var records: [DeliveredRecord] = []
        try await a.waitFor("a queue record") { subscriber in
            var decoder = FrameDecoder(bodyBytesMax: 1 << 20)
            decoder.append(ByteBuffer(bytes: subscriber.data))
            records = []
            while let frame = try? decoder.next(), let record = try? DeliveredRecord.decode(frame: frame) { records.append(record) }
            return !records.isEmpty
        }
        guard case .message(let message) = records[0] else { return XCTFail("a message: \(records)") }
        XCTAssertEqual(Array(message.payload.readableBytesView), [0, 159, 146, 150])
        XCTAssertEqual(message.queue, "q1")
        XCTAssertFalse(message.redelivered)
        // Closed unacked: the next member gets it, redelivered, same id.
        let b = try CurlStream(["--http2-prior-knowledge", "\(live.base)/v1/subscribe?topic=bin.*&queue=q1"])
        try await poll("two members") {
            Curl.request(["--http2-prior-knowledge", "\(live.base)/metrics"]).body.contains("piglix_queue_members 2\n")
        }
        a.stop()
        try await b.waitFor("the redelivery") { !$0.messages.isEmpty }
        XCTAssertEqual(b.messages[0]["id"] as? String, message.id)
        XCTAssertEqual(b.messages[0]["redelivered"] as? Bool, true)
        XCTAssertEqual(b.messages[0]["data_b64"] as? String, "AJ+Slg==")
        let ack = Curl.request(["--http2-prior-knowledge", "-d", #"{"queue":"q1","ids":["\#(message.id)"]}"#, "\(live.base)/v1/ack"])
        XCTAssertEqual(ack.httpCode, 200)
        XCTAssertEqual(ack.json["acked"] as? Int, 1)
        b.stop()
        await live.stop()
    }
}
