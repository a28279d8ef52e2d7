import NIOCore
import Synchronization

/// The acks of one streaming publish, kept in input order while several
/// batches are in flight.
///
/// The body reader takes a slot per batch (in input order) and the batch's
/// completion fills it, possibly out of order (a `safe` batch completes after
/// a later `fifo` one); the response writer takes every filled slot at the
/// head of the line in one buffer. The reader waits while more than
/// `recordsMax` records or `bytesMax` payload bytes are in flight, so a
/// publisher that outruns the cluster is slowed by HTTP/2 flow control
/// instead of growing the node's memory.
final class AckPipeline: Sendable {
    private struct Slot {
        var acks: ByteBuffer?
        let records: Int
        let bytes: Int
    }

    private struct State {
        /// Slots from `head` on are not yet written; `firstSlot` is the number
        /// of the slot at index 0.
        var slots: [Slot] = []
        var head = 0
        var firstSlot = 0
        var records = 0
        var bytes = 0
        var readerEnded = false
        var aborted = false
        var readerWaiter: CheckedContinuation<Void, Never>?
        var writerWaiter: CheckedContinuation<ByteBuffer?, Never>?
    }

    let recordsMax: Int
    let bytesMax: Int
    private let state = Mutex(State())

    init(recordsMax: Int, bytesMax: Int) {
        self.recordsMax = recordsMax
        self.bytesMax = bytesMax
    }

    /// Reserves the next slot in input order for a batch of `records`
    /// records and `bytes` payload bytes; fill it with ``complete(_:acks:)``.
    func reserve(records: Int, bytes: Int) -> Int {
        state.withLock { state in
            state.slots.append(Slot(acks: nil, records: records, bytes: bytes))
            state.records += records
            state.bytes += bytes
            return state.firstSlot + state.slots.count - 1
        }
    }

    /// Fills a slot; acks at the head of the line become ready to write.
    func complete(_ slot: Int, acks: ByteBuffer) {
        let (writer, ready): (CheckedContinuation<ByteBuffer?, Never>?, ByteBuffer?) = state.withLock { state in
            state.slots[slot - state.firstSlot].acks = acks
            guard state.writerWaiter != nil, let ready = Self.takeReady(&state) else { return (nil, nil) }
            defer { state.writerWaiter = nil }
            return (state.writerWaiter, ready)
        }
        writer?.resume(returning: ready)
        wakeReaderIfRoom()
    }

    /// Waits until the batches in flight leave room for more, or the
    /// stream was aborted (the reader should stop then).
    func waitForRoom() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state in
                if state.aborted || !Self.isFull(state, recordsMax: recordsMax, bytesMax: bytesMax) { return true }
                state.readerWaiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        return state.withLock { !$0.aborted }
    }

    var isFull: Bool { state.withLock { Self.isFull($0, recordsMax: recordsMax, bytesMax: bytesMax) } }

    /// Whether acks at the head of the line are ready and not yet taken by the writer.
    var hasAcksToWrite: Bool {
        state.withLock { $0.head < $0.slots.count && $0.slots[$0.head].acks != nil }
    }

    /// For tests: the writer is parked in ``next()``, waiting for the head of the line.
    var isWriterWaiting: Bool { state.withLock { $0.writerWaiter != nil } }

    /// For tests: the reader is parked in ``waitForRoom()``.
    var isReaderWaiting: Bool { state.withLock { $0.readerWaiter != nil } }

    /// No more slots will be reserved; the writer ends once every slot is written.
    func endReading() {
        let writer = state.withLock { state -> CheckedContinuation<ByteBuffer?, Never>? in
            state.readerEnded = true
            guard state.head == state.slots.count, let writer = state.writerWaiter else { return nil }
            state.writerWaiter = nil
            return writer
        }
        writer?.resume(returning: nil)
    }

    /// The writer failed (the client went away): release a waiting reader.
    func abort() {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.aborted = true
            defer { state.readerWaiter = nil }
            return state.readerWaiter
        }
        reader?.resume()
    }

    /// The acks ready to write, in order; nil once the reader ended and
    /// every slot was written.
    func next() async -> ByteBuffer? {
        let ready: ByteBuffer?? = state.withLock { state in
            if let ready = Self.takeReady(&state) { return .some(ready) }
            if state.readerEnded && state.head == state.slots.count { return .some(nil) }
            return nil
        }
        if let ready {
            wakeReaderIfRoom()
            return ready
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<ByteBuffer?, Never>) in
            let now: ByteBuffer?? = state.withLock { state in
                if let ready = Self.takeReady(&state) { return .some(ready) }
                if state.readerEnded && state.head == state.slots.count { return .some(nil) }
                state.writerWaiter = continuation
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    private func wakeReaderIfRoom() {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.readerWaiter != nil, !Self.isFull(state, recordsMax: recordsMax, bytesMax: bytesMax) else { return nil }
            defer { state.readerWaiter = nil }
            return state.readerWaiter
        }
        reader?.resume()
    }

    private static func isFull(_ state: State, recordsMax: Int, bytesMax: Int) -> Bool {
        state.records >= recordsMax || state.bytes >= bytesMax
    }

    /// Takes the filled slots at the head of the line, joined in one buffer.
    private static func takeReady(_ state: inout State) -> ByteBuffer? {
        guard state.head < state.slots.count, var first = state.slots[state.head].acks else { return nil }
        state.records -= state.slots[state.head].records
        state.bytes -= state.slots[state.head].bytes
        state.head += 1
        while state.head < state.slots.count, var acks = state.slots[state.head].acks {
            first.writeBuffer(&acks)
            state.records -= state.slots[state.head].records
            state.bytes -= state.slots[state.head].bytes
            state.head += 1
        }
        // Compact now and then, so the array does not grow with the stream.
        if state.head >= 64 && state.head * 2 >= state.slots.count {
            state.slots.removeFirst(state.head)
            state.firstSlot += state.head
            state.head = 0
        }
        return first
    }
}
