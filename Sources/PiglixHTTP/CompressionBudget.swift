import PiglixWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The node's memory for compressed subscribe streams. Each stream's zlib
/// state lives as long as the stream, so without a bound a few thousand
/// `Accept-Encoding: gzip` subscribers could take gigabytes; each reserves
/// its compressor's size here first and a subscribe past `bytesMax` is a
/// 429. Small zlib windows keep a stream's share small.
public final class CompressionBudget: Sendable {
    /// zlib windowBits 12 (4 KiB window) and memLevel 5: 38 KiB a stream
    /// instead of zlib's 262 KiB default, for NDJSON whose repeats (field
    /// names, topics) are records apart, not kilobytes.
    public static let windowBits: Int32 = 12
    public static let memoryLevel: Int32 = 5

    public let bytesMax: Int
    public let bytesPerStream = StreamCompressorCost.bytes

    private struct State {
        var used = 0
        var refused: UInt64 = 0
        var freedSinceTrim = 0
        var lastTrim: ContinuousClock.Instant?
        var trimScheduled = false
    }

    private let state = Mutex(State())

    public init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    /// Bytes reserved by open compressed streams.
    public var usedBytes: Int { state.withLock { $0.used } }
    /// Compressed subscribes refused since start.
    public var refusedStreams: UInt64 { state.withLock { $0.refused } }
    /// How many compressed streams fit in the budget.
    public var streamsMax: Int { bytesMax / bytesPerStream }

    /// A reservation for one stream's compressor, or nil when the budget is spent.
    func reserve() -> CompressionReservation? {
        let bytes = bytesPerStream
        let granted = state.withLock { state in
            guard state.used + bytes <= bytesMax else {
                state.refused += 1
                return false
            }
            state.used += bytes
            return true
        }
        return granted ? CompressionReservation(budget: self, bytes: bytes) : nil
    }

    fileprivate func release(_ bytes: Int) {
        state.withLock { state in
            state.used -= bytes
            state.freedSinceTrim += bytes
        }
        trimIfDue()
    }

    /// zlib's buffers (under glibc's mmap threshold) go back to the
    /// allocator's arenas, not to the system: RSS stayed at its peak after
    /// thousands of streams closed. Once 4 MiB of compressor state was
    /// freed, a trim returns it: at once, or (at most one a second) a
    /// second after the last one, so the tail of a mass close is returned too.
    private func trimIfDue() {
        enum Action { case none, now, later(Duration) }
        let now = ContinuousClock.now
        let action: Action = state.withLock { state in
            guard state.freedSinceTrim >= 4 << 20, !state.trimScheduled else { return .none }
            if let last = state.lastTrim, now - last < .seconds(1) {
                state.trimScheduled = true
                return .later(last + .seconds(1) - now)
            }
            state.freedSinceTrim = 0
            state.lastTrim = now
            return .now
        }
        switch action {
        case .none:
            break
        case .now:
            if let mallocTrim { _ = mallocTrim(0) }
        case .later(let delay):
            Task {
                try? await Task.sleep(for: delay)
                self.state.withLock { $0.trimScheduled = false }
                self.trimIfDue()
            }
        }
    }
}

/// glibc's `malloc_trim`, looked up at run time (no Swift module exports
/// malloc.h); nil on other C libraries, where nothing is trimmed.
private let mallocTrim: (@convention(c) (Int) -> Int32)? = {
    #if canImport(Glibc)
    guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    #else
    return nil
    #endif
}()

/// What ``CompressionBudget`` charges a stream.
enum StreamCompressorCost {
    static let bytes = StreamCompressor.stateBytes(windowBits: CompressionBudget.windowBits, memoryLevel: CompressionBudget.memoryLevel)
}

/// One stream's share of the budget, given back once: when the stream
/// ends, or when the reservation is dropped unused.
final class CompressionReservation: Sendable {
    private let budget: CompressionBudget
    let bytes: Int
    private let released = Atomic(false)

    fileprivate init(budget: CompressionBudget, bytes: Int) {
        self.budget = budget
        self.bytes = bytes
    }

    func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { budget.release(bytes) }
    }

    deinit { release() }
}
