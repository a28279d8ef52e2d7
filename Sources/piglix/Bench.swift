import ArgumentParser
import Foundation
import NIOCore
import PiglixClient
import PiglixWire
import Synchronization

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and latency with PiglixClient.",
        discussion: """
            Scenario 1to1: one streaming publisher (binary frames on one POST /v1/publish \
            stream) sends SIZE-byte payloads to one topic; one subscriber (binary frames) \
            receives them. Each payload starts with the publisher's monotonic clock in \
            nanoseconds, so publish→deliver latency is measured per message, in one process. \
            Prints delivered msgs/s and MB/s (payload bytes), latency percentiles \
            (HdrHistogram), and wire bytes per message on each side (HTTP/2 framing and \
            acks included). Without --url it starts `piglix serve` (this executable) on a \
            free loopback port with --log-level warning, and prints its peak RSS. \
            Build with -c release for meaningful figures.
            """)

    @Argument(help: "Scenario: 1to1.")
    var scenario: String = "1to1"
    @Option(help: "Measured seconds of publishing.")
    var seconds: Double = 5
    @Option(help: "Unmeasured seconds of publishing before, to warm up.")
    var warmup: Double = 1
    @Option(help: "Publish rate in messages per second; as fast as possible when absent.")
    var rate: Int?
    @Option(help: "Payload bytes (at least 16).")
    var size: Int = 128
    @Option(help: "Most unacked records of the publisher.")
    var inFlight: Int = 8192
    @Option(
        help: """
            Most messages the publisher may be ahead of the subscriber (published, less \
            received or reported lost); 0 for no bound. Keep it under the node's subscriber \
            queue bound (10,000 messages by default), or a subscriber that falls behind loses \
            messages (drop-oldest) instead of slowing the publisher.
            """)
    var window: Int = 8192
    @Option(help: "Subscriber's linger_ms: how long the node waits to fill a batch (node default when absent).")
    var lingerMs: Int?
    @Option(help: "Subscriber's batch_bytes: most bytes per batch (node default when absent).")
    var batchBytes: Int?
    @Option(help: "A running node's URL; without it the bench starts its own.")
    var url: String?
    @OptionGroup(title: "Cluster mode (ClusterBench.swift)")
    var cluster: ClusterBenchOptions

    func run() async throws {
        if cluster.nodes != nil {
            return try await ClusterBench.run(
                ClusterBenchPlan(options: cluster, scenario: scenario, seconds: seconds, warmup: warmup, rate: rate, size: size, inFlight: inFlight))
        }
        guard scenario == "1to1" else { throw ValidationError("unknown scenario \(scenario); known: 1to1") }
        guard size >= 16 else { throw ValidationError("--size must be at least 16") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        if window < 0 { throw ValidationError("--window must be 0 (no bound) or positive") }

        var server: ServerProcess? = nil
        let baseURL: String
        if let url {
            baseURL = url
        } else {
            let started = try await ServerProcess.start()
            server = started
            baseURL = "http://127.0.0.1:\(started.port)"
        }
        defer { server?.stop() }

        let publisherClient = try PiglixClient(url: baseURL)
        let subscriberClient = try PiglixClient(url: baseURL)
        try await publisherClient.connect()
        try await subscriberClient.connect()

        let topic = "bench.1to1.\(UInt32.random(in: 0...UInt32.max))"
        let shared = BenchShared()
        let subscription = subscriberClient.subscribe(
            patterns: [topic], format: .binary, options: SubscribeOptions(batchBytes: batchBytes, lingerMs: lingerMs))
        let (ready, readyContinuation) = AsyncStream<Void>.makeStream()

        let consumer = Task { () -> ConsumerResult in
            // A publisher waiting on a subscriber that stopped must not wait forever.
            defer { shared.consumerEnded() }
            var result = ConsumerResult()
            var signalled = false
            for try await record in subscription {
                if result.count(record) { shared.didReceive(result.accounted) }
                if !signalled, case .control = record {
                    // The first control record (the view) says the subscription is live.
                    signalled = true
                    readyContinuation.yield()
                    readyContinuation.finish()
                }
            }
            return result
        }
        for await _ in ready { break }
        trace("subscribed")

        // Publisher: warm-up, then the measured run.
        var published = 0
        var measuredSent = 0
        let stream = try await publisherClient.publishStream(inFlightMax: inFlight)
        var payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
        var measureStart: UInt64 = 0
        var measureStartWire = (publisherClient.wireBytes, subscriberClient.wireBytes)
        let warmupNanos = UInt64(warmup * 1e9)
        let runNanos = UInt64(seconds * 1e9)
        let begin = monotonicNanos()
        let interval = rate.map { 1e9 / Double($0) }
        let clock = ContinuousClock()
        let beginInstant = clock.now
        var measuring = false
        while true {
            let now = monotonicNanos()
            let elapsed = now - begin
            if !measuring && elapsed >= warmupNanos {
                measuring = true
                measureStart = now
                measureStartWire = (publisherClient.wireBytes, subscriberClient.wireBytes)
            }
            if measuring && now - measureStart >= runNanos { break }
            // The loop's clock read is the send time unless the loop waited:
            // one read per message.
            var sentAt = now
            if let interval {
                let due = Double(published) * interval
                if Double(elapsed) < due {
                    try await Task.sleep(until: beginInstant + .nanoseconds(Int64(due)), clock: clock)
                    sentAt = monotonicNanos()
                }
            }
            if window > 0, published - shared.accounted >= window {
                // Wait until the subscriber is half a window behind (one wake per half window).
                await shared.wait(until: published - window / 2)
                sentAt = monotonicNanos()
            }
            payload.setInteger(sentAt, at: 0)
            payload.setInteger(UInt8(measuring ? 1 : 0), at: 8)
            try await stream.send(PublishRecord(topic: topic, payload: payload))
            published += 1
            if measuring { measuredSent += 1 }
        }
        let publishEnd = monotonicNanos()
        trace("published \(published), counts \(stream.counts)")
        try await stream.finish()
        trace("finished")
        let rejected = stream.counts.rejected

        // Wait for the subscriber to get everything (or give up after 10 s),
        // then stop it; it returns what it measured.
        let expected = published - rejected
        let deadline = ContinuousClock.now + .seconds(10)
        while shared.accounted < expected && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let complete = shared.accounted >= expected
        consumer.cancel()
        let result: ConsumerResult? = complete ? try await consumer.value : nil
        trace("consumer done")
        let endWire = (publisherClient.wireBytes, subscriberClient.wireBytes)
        try? await publisherClient.close()
        try? await subscriberClient.close()

        guard let result else {
            print("the subscriber did not receive (or hear of the loss of) all \(published - rejected) messages within 10 s")
            throw ExitCode.failure
        }
        let lastDelivery = max(result.lastMeasuredAt, measureStart + 1)
        let deliverSeconds = Double(lastDelivery - measureStart) / 1e9
        let publishSeconds = Double(publishEnd - measureStart) / 1e9
        let messagesPerSecond = Double(result.measured) / deliverSeconds
        let megabytesPerSecond = Double(result.payloadBytes) / deliverSeconds / 1e6
        let measuredCount = max(measuredSent, 1)
        let sentPerMessage = Double(endWire.0.sent - measureStartWire.0.sent) / Double(measuredCount)
        let receivedPerMessage = Double(endWire.1.received - measureStartWire.1.received) / Double(measuredCount)

        let batching = [lingerMs.map { "linger_ms \($0)" }, batchBytes.map { "batch_bytes \($0)" }].compactMap { $0 }
        print(
            "scenario 1to1: \(size)-byte payloads, \(rate.map { "paced at \($0) msgs/s" } ?? "unpaced"), in-flight \(inFlight)"
                + (batching.isEmpty ? "" : ", " + batching.joined(separator: ", ")) + ", \(baseURL)")
        print(String(format: "published %d (%d measured over %.2f s), rejected %d, delivered %d measured", published, measuredSent, publishSeconds, rejected, result.measured))
        print(String(format: "throughput: %.0f msgs/s delivered, %.1f MB/s payload", messagesPerSecond, megabytesPerSecond))
        print("latency publish→deliver µs: \(latencySummary(result.latency, [50, 90, 99, 99.9]))")
        if result.lost > 0 {
            print("LOST \(result.lost) messages (gap records: the subscriber fell behind its queue bound); figures are not comparable")
        }
        print(String(format: "wire bytes per message: publisher sent %.1f, subscriber received %.1f (HTTP/2 framing included)", sentPerMessage, receivedPerMessage))
        if let server {
            print("server peak RSS (VmHWM): \(server.peakRSS() ?? "unknown")")
        }
    }
}

/// What the consumer task tells the publisher: how far it got, and a wake-up
/// when the publisher waits for it (the `--window` bound).
final class BenchShared: Sendable {
    /// Messages received or reported lost so far.
    private let count = Atomic<Int>(0)
    private let waiting = Atomic<Bool>(false)
    private let ended = Atomic<Bool>(false)
    private let waiter = Mutex<(target: Int, continuation: CheckedContinuation<Void, Never>)?>(nil)

    var accounted: Int { count.load(ordering: .relaxed) }

    /// Consumer: `total` messages are now accounted for. The store and the
    /// load below are sequentially consistent, as are the publisher's in
    /// `wait`, so a wait is never missed.
    func didReceive(_ total: Int) {
        count.store(total, ordering: .sequentiallyConsistent)
        guard waiting.load(ordering: .sequentiallyConsistent) else { return }
        let continuation = waiter.withLock { waiter -> CheckedContinuation<Void, Never>? in
            guard let current = waiter, total >= current.target else { return nil }
            waiter = nil
            waiting.store(false, ordering: .sequentiallyConsistent)
            return current.continuation
        }
        continuation?.resume()
    }

    /// Consumer: it stopped; a waiting publisher goes on (and the run then
    /// reports what was not received).
    func consumerEnded() {
        let continuation = waiter.withLock { waiter -> CheckedContinuation<Void, Never>? in
            ended.store(true, ordering: .sequentiallyConsistent)
            defer { waiter = nil }
            return waiter?.continuation
        }
        continuation?.resume()
    }

    /// Publisher: waits until `target` messages are accounted for.
    func wait(until target: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = waiter.withLock { waiter -> Bool in
                waiter = (target, continuation)
                waiting.store(true, ordering: .sequentiallyConsistent)
                guard count.load(ordering: .sequentiallyConsistent) >= target || ended.load(ordering: .sequentiallyConsistent)
                else { return false }
                waiter = nil
                waiting.store(false, ordering: .sequentiallyConsistent)
                return true
            }
            if resumeNow { continuation.resume() }
        }
    }
}
