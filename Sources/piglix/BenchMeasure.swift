import Foundation
import Histogram
import NIOCore
import PiglixClient
import PiglixWire

/// What one bench subscriber measured. Payloads start with the publisher's
/// CLOCK_MONOTONIC (8 bytes) and a flag byte (1: sent while measuring), so
/// publish→deliver latency is measured per message in this one process.
struct ConsumerResult: Sendable {
    var received = 0
    /// Messages the node reported dropped for this subscriber (gap records).
    var lost = 0
    var measured = 0
    var payloadBytes = 0
    var lastMeasuredAt: UInt64 = 0
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)

    /// Messages received plus messages a gap record said were lost.
    var accounted: Int { received + lost }

    /// Counts a message (measuring it when it was sent while measuring) or
    /// a gap record; false for other control records and for a message
    /// too short to carry the bench's header.
    @inline(__always)
    mutating func count(_ record: DeliveredRecord) -> Bool {
        switch record {
        case .message(let message):
            let now = monotonicNanos()
            let payload = message.payload
            guard let sentAt: UInt64 = payload.getInteger(at: payload.readerIndex),
                let measuring: UInt8 = payload.getInteger(at: payload.readerIndex + 8)
            else { return false }
            received += 1
            if measuring == 1 {
                measured += 1
                payloadBytes += payload.readableBytes
                _ = latency.record(now &- sentAt)
                lastMeasuredAt = now
            }
            return true
        case .control(.gap(let lost, _)):
            // Dropped for this slow subscriber: accounted for, never to arrive.
            self.lost += Int(lost)
            return true
        case .control:
            return false
        }
    }
}

/// `p50 … max …` in µs for `percentiles` of `histogram` (nanoseconds).
func latencySummary(_ histogram: Histogram<UInt64>, _ percentiles: [Double]) -> String {
    func micros(_ nanos: UInt64) -> String { String(format: "%.0f", Double(nanos) / 1000) }
    let parts = percentiles.map { "p\(String(format: "%g", $0)) \(micros(histogram.valueAtPercentile($0)))" }
    return (parts + ["max \(micros(histogram.max))"]).joined(separator: " ")
}

/// Progress lines on stderr when PIGLIX_BENCH_TRACE is set.
func trace(_ text: @autoclosure () -> String) {
    if Environment.get("PIGLIX_BENCH_TRACE") != nil { printError("trace: " + text()) }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in the publisher and subscriber.
func monotonicNanos() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
