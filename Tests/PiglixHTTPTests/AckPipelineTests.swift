import NIOCore
import XCTest

@testable import PiglixHTTP

/// The acks of a pipelined publish stream: input order whatever the order
/// in which batches complete, and a bounded number of records in flight.
final class AckPipelineTests: XCTestCase {
    private func text(_ buffer: ByteBuffer?) -> String? { buffer.map { String(buffer: $0) } }

    func testAcksLeaveInInputOrderWhenBatchesCompleteOutOfOrder() async {
        let pipeline = AckPipeline(recordsMax: 100, bytesMax: 1 << 20)
        let first = pipeline.reserve(records: 1, bytes: 10)
        let second = pipeline.reserve(records: 1, bytes: 10)
        let third = pipeline.reserve(records: 1, bytes: 10)
        // A later batch (fifo) completes before an earlier one (safe): held back.
        pipeline.complete(third, acks: ByteBuffer(string: "c"))
        pipeline.complete(second, acks: ByteBuffer(string: "b"))
        pipeline.complete(first, acks: ByteBuffer(string: "a"))
        pipeline.endReading()
        let ready = await pipeline.next()
        XCTAssertEqual(text(ready), "abc")
        let end = await pipeline.next()
        XCTAssertNil(end)
    }

    func testWriterWaitsForTheHeadOfTheLine() async {
        let pipeline = AckPipeline(recordsMax: 100, bytesMax: 1 << 20)
        let first = pipeline.reserve(records: 1, bytes: 1)
        let second = pipeline.reserve(records: 1, bytes: 1)
        pipeline.complete(second, acks: ByteBuffer(string: "2"))
        let writer = Task { await pipeline.next() }
        try? await Task.sleep(for: .milliseconds(20))
        pipeline.complete(first, acks: ByteBuffer(string: "1"))
        let ready = await writer.value
        XCTAssertEqual(text(ready), "12")
    }

    func testReaderWaitsWhileTooManyRecordsAreInFlight() async {
        let pipeline = AckPipeline(recordsMax: 2, bytesMax: 1 << 20)
        let a = pipeline.reserve(records: 1, bytes: 1)
        _ = pipeline.reserve(records: 1, bytes: 1)
        XCTAssertTrue(pipeline.isFull)
        let reader = Task { await pipeline.waitForRoom() }
        try? await Task.sleep(for: .milliseconds(20))
        pipeline.complete(a, acks: ByteBuffer(string: "a"))
        // Completing is not enough: the room is made when the ack is taken to be written.
        let ready = await pipeline.next()
        XCTAssertEqual(text(ready), "a")
        let roomMade = await reader.value
        XCTAssertTrue(roomMade)
        XCTAssertFalse(pipeline.isFull)
    }

    func testAbortReleasesAWaitingReader() async {
        let pipeline = AckPipeline(recordsMax: 1, bytesMax: 1 << 20)
        _ = pipeline.reserve(records: 1, bytes: 1)
        let reader = Task { await pipeline.waitForRoom() }
        try? await Task.sleep(for: .milliseconds(20))
        pipeline.abort()
        let roomMade = await reader.value
        XCTAssertFalse(roomMade)
    }

    func testPayloadBytesBoundTheFlightToo() {
        let pipeline = AckPipeline(recordsMax: 1000, bytesMax: 100)
        _ = pipeline.reserve(records: 1, bytes: 60)
        XCTAssertFalse(pipeline.isFull)
        _ = pipeline.reserve(records: 1, bytes: 60)
        XCTAssertTrue(pipeline.isFull)
    }
}
