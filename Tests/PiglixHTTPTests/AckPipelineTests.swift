import NIOCore
import Synchronization
import XCTest

@testable import PiglixHTTP

/// The acks of a pipelined publish stream: input order whatever the order
/// in which batches complete, and a bounded number of records in flight.
final class AckPipelineTests: XCTestCase {
    private func text(_ buffer: ByteBuffer?) -> String? { buffer.map { String(buffer: $0) } }

    /// A task running `body`, and whether it has returned yet.
    private struct Waiter<Value: Sendable> {
        final class Flag: Sendable {
            let value = Atomic<Bool>(false)
        }
        let flag = Flag()
        let task: Task<Value, Never>

        init(_ body: @escaping @Sendable () async -> Value) {
            let flag = self.flag
            task = Task {
                let value = await body()
                flag.value.store(true, ordering: .sequentiallyConsistent)
                return value
            }
        }

        var returned: Bool { flag.value.load(ordering: .sequentiallyConsistent) }
    }

    /// Waits (without sleeping a guessed while) until `parked` says the task
    /// waits inside the pipeline, and checks that it has not returned: a
    /// call that returned early fails here instead of passing by luck.
    private func assertParked<Value: Sendable>(
        _ waiter: Waiter<Value>, _ what: String, file: StaticString = #filePath, line: UInt = #line, _ parked: () -> Bool
    ) async {
        let deadline = ContinuousClock.now + .seconds(10)
        while !parked() {
            if waiter.returned {
                return XCTFail("\(what) returned instead of waiting", file: file, line: line)
            }
            if ContinuousClock.now > deadline { return XCTFail("\(what) never waited", file: file, line: line) }
            await Task.yield()
        }
        XCTAssertFalse(waiter.returned, "\(what) returned while parked", file: file, line: line)
    }

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
        let writer = Waiter { await pipeline.next() }
        // The second batch is ready but the first is not: the writer waits.
        await assertParked(writer, "next()") { pipeline.isWriterWaiting }
        pipeline.complete(first, acks: ByteBuffer(string: "1"))
        let ready = await writer.task.value
        XCTAssertEqual(text(ready), "12")
    }

    func testReaderWaitsWhileTooManyRecordsAreInFlight() async {
        let pipeline = AckPipeline(recordsMax: 2, bytesMax: 1 << 20)
        let a = pipeline.reserve(records: 1, bytes: 1)
        _ = pipeline.reserve(records: 1, bytes: 1)
        XCTAssertTrue(pipeline.isFull)
        let reader = Waiter { await pipeline.waitForRoom() }
        await assertParked(reader, "waitForRoom()") { pipeline.isReaderWaiting }
        pipeline.complete(a, acks: ByteBuffer(string: "a"))
        // Completing is not enough: the room is made when the ack is taken to be written.
        XCTAssertTrue(pipeline.isReaderWaiting, "the reader still waits after complete()")
        XCTAssertFalse(reader.returned)
        let ready = await pipeline.next()
        XCTAssertEqual(text(ready), "a")
        let roomMade = await reader.task.value
        XCTAssertTrue(roomMade)
        XCTAssertFalse(pipeline.isFull)
    }

    func testAbortReleasesAWaitingReader() async {
        let pipeline = AckPipeline(recordsMax: 1, bytesMax: 1 << 20)
        _ = pipeline.reserve(records: 1, bytes: 1)
        let reader = Waiter { await pipeline.waitForRoom() }
        await assertParked(reader, "waitForRoom()") { pipeline.isReaderWaiting }
        pipeline.abort()
        let roomMade = await reader.task.value
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
