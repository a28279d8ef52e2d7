import NIOCore
import PiglixTopics
import PiglixWire
import XCTest

@testable import PiglixBroker

/// The broker's cluster codecs decode what they encode, and refuse what
/// they did not.
final class CodecTests: XCTestCase {
    func testClusterPayloadRoundTripsHeadersAndPayload() throws {
        let headers = [MessageHeader(name: "a", value: "1"), MessageHeader(name: "content-type", value: "text/plain; é")]
        for (headers, payload) in [([], ""), (headers, "hello"), (headers, String(repeating: "x", count: 70_000))] {
            let record = PublishRecord(topic: "t", payload: ByteBuffer(string: payload), delivery: .safe, headers: headers)
            let decoded = try XCTUnwrap(ClusterPayload.decode(ClusterPayload.encode(record)))
            XCTAssertEqual(decoded.headers, headers)
            XCTAssertEqual(String(buffer: decoded.payload), payload)
        }
    }

    func testClusterPayloadRefusesTruncatedHeaders() {
        let record = PublishRecord(
            topic: "t", payload: ByteBuffer(), delivery: .fifo, headers: [MessageHeader(name: "name", value: "value")])
        let bytes = ClusterPayload.encode(record)
        for length in 0..<(bytes.count - 1) {
            XCTAssertNil(ClusterPayload.decode(Array(bytes.prefix(length))), "prefix of \(length) bytes")
        }
    }

    func testCheckpointRoundTripsEveryField() throws {
        var first = StoredMessage(
            id: MessageID(sequence: 0, position: ClusterPosition(view: 7, delivered: [120, 0, 33])), topic: "a.b",
            payload: ByteBuffer(string: "hello"), delivery: .total, headers: [MessageHeader(name: "k", value: "v")],
            payloadIsText: true)
        first.source = MessageSource(view: 7, origin: 2, seq: 33)
        let second = StoredMessage(
            id: MessageID(sequence: 0, position: ClusterPosition(view: 8, delivered: [1])), topic: "a.c",
            payload: ByteBuffer(bytes: [0xFF, 0x00]), delivery: .safe, headers: [], payloadIsText: false)
        let limits = BrokerSettings().topicLimits
        for messages in [[], [first], [first, second]] {
            let decoded = try CheckpointCodec.decode(CheckpointCodec.encode(messages), topicLimits: limits)
            XCTAssertEqual(decoded.count, messages.count)
            for (got, want) in zip(decoded, messages) {
                XCTAssertEqual(got.topic, want.topic)
                XCTAssertEqual(got.payload, want.payload)
                XCTAssertEqual(got.delivery, want.delivery)
                XCTAssertEqual(got.headers, want.headers)
                XCTAssertEqual(got.payloadIsText, want.payloadIsText)
                XCTAssertEqual(got.id.position, want.id.position)
                XCTAssertEqual(got.source, want.source ?? MessageSource(view: 0, origin: 0, seq: 0))
            }
        }
    }

    func testCheckpointRefusesEveryTruncation() {
        let message = StoredMessage(
            id: MessageID(sequence: 0, position: ClusterPosition(view: 1, delivered: [1])), topic: "t",
            payload: ByteBuffer(string: "p"), delivery: .fifo, headers: [MessageHeader(name: "h", value: "v")], payloadIsText: true)
        let bytes = CheckpointCodec.encode([message])
        for length in 1..<bytes.count {
            XCTAssertThrowsError(try CheckpointCodec.decode(Array(bytes.prefix(length)), topicLimits: BrokerSettings().topicLimits))
        }
    }
}
