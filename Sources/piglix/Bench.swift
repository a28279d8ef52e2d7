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
            receives them. Scenario fanout: the same publisher, --subscribers N subscribers \
            on that topic, each on its own connection; throughput is the sum over them. Each \
            payload starts with the publisher's monotonic clock in nanoseconds, so \
            publish→deliver latency is measured per message, in one process. Prints delivered \
            msgs/s and MB/s (payload bytes), latency percentiles (HdrHistogram), wire bytes \
            per message on each side (HTTP/2 framing and acks included), and a RESULT line \
            with the same keys as the peers' load generator. Without --url it starts \
            `piglix serve` (this executable) on a free loopback port with --log-level warning, \
            and prints its peak RSS and its CPU time per delivered message over the measured \
            window. Build with -c release for meaningful figures.
            """)

    @Argument(help: "Scenario: 1to1 or fanout (cluster mode: see --nodes).")
    var scenario: String = "1to1"
    @Option(help: "Measured seconds of publishing.")
    var seconds: Double = 5
    @Option(help: "Measured messages to publish instead of --seconds (a fixed-count run, as for instruction counts); in a cluster run, split between the publishers.")
    var messages: Int?
    @Option(help: "Unmeasured seconds of publishing before, to warm up.")
    var warmup: Double = 1
    @Option(help: "Publish rate in messages per second; as fast as possible when absent.")
    var rate: Int?
    @Option(help: "Payload bytes (at least 16).")
    var size: Int = 128
    @Option(help: "Scenario fanout: subscribers of the one topic, each on its own connection (4).")
    var subscribers: Int?
    @Option(help: "Most unacked records of the publisher.")
    var inFlight: Int = 8192
    @Option(
        help: """
            Most messages the publisher may be ahead of the slowest subscriber (published, less \
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
        if let messages, messages <= 0 { throw ValidationError("--messages must be positive") }
        if cluster.nodes != nil {
            if subscribers != nil {
                throw ValidationError("--subscribers is for the single-node fanout; the cluster's fanout has one subscriber per node")
            }
            return try await ClusterBench.run(
                ClusterBenchPlan(options: cluster, scenario: scenario, seconds: seconds, messages: messages, warmup: warmup, rate: rate, size: size, inFlight: inFlight))
        }
        let subscriberCount: Int
        switch scenario {
        case "1to1":
            guard subscribers == nil || subscribers == 1 else { throw ValidationError("1to1 has one subscriber; use fanout --subscribers N") }
            subscriberCount = 1
        case "fanout":
            subscriberCount = subscribers ?? 4
            guard (1...64).contains(subscriberCount) else { throw ValidationError("--subscribers must be 1 to 64") }
        default:
            throw ValidationError("unknown scenario \(scenario); known: 1to1, fanout (and the cluster's with --nodes)")
        }
        guard size >= 16 else { throw ValidationError("--size must be at least 16") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        if window < 0 { throw ValidationError("--window must be 0 (no bound) or positive") }
        try await runSingleNode(subscriberCount: subscriberCount)
    }

    /// `1to1` and `fanout`: one publisher, `subscriberCount` subscribers of
    /// one topic, each on its own connection (1to1 is fanout to one).
    private func runSingleNode(subscriberCount: Int) async throws {
        let loadAtStart = BenchSystem.loadAverage()
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
        try await publisherClient.connect()
        let topic = "bench.\(scenario).\(UInt32.random(in: 0...UInt32.max))"
        var consumers: [(client: PiglixClient, progress: BenchShared, task: Task<ConsumerResult, any Error>)] = []
        defer {
            for consumer in consumers { consumer.task.cancel() }
        }
        for _ in 0..<subscriberCount {
            let client = try PiglixClient(url: baseURL)
            try await client.connect()
            let progress = BenchShared()
            let subscription = client.subscribe(
                patterns: [topic], format: .binary, options: SubscribeOptions(batchBytes: batchBytes, lingerMs: lingerMs))
            let task = Task { () -> ConsumerResult in
                // A publisher waiting on a subscriber that stopped must not wait forever.
                defer { progress.consumerEnded() }
                var result = ConsumerResult()
                for try await record in subscription {
                    if result.count(record) { progress.didReceive(result.accounted, delivered: result.received) }
                    // The first control record (the view) says the subscription is live.
                    if case .control = record { progress.markReady() }
                }
                return result
            }
            consumers.append((client, progress, task))
        }
        let progress = consumers.map(\.progress)
        let readyBy = ContinuousClock.now + .seconds(15)
        while !progress.allSatisfy(\.isReady) {
            guard ContinuousClock.now < readyBy else { throw ValidationError("the subscribers did not start within 15 s") }
            try await Task.sleep(for: .milliseconds(2))
        }
        trace("subscribed \(subscriberCount)")

        // Publisher: warm-up, then the measured run.
        var published = 0
        var measuredSent = 0
        let stream = try await publisherClient.publishStream(inFlightMax: inFlight)
        var payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
        var measureStart: UInt64 = 0
        func subscribersReceived() -> Int { consumers.reduce(0) { $0 + $1.client.wireBytes.received } }
        var measureStartWire = (publisherClient.wireBytes.sent, subscribersReceived())
        var cpuWindow: NodeCPUWindow? = nil
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
                measureStartWire = (publisherClient.wireBytes.sent, subscribersReceived())
                if let server {
                    cpuWindow = NodeCPUWindow(cpuAtStart: [server.child.cpuSeconds()], deliveredAtStart: progress.reduce(0) { $0 + $1.delivered })
                }
            }
            if measuring {
                if let messages {
                    if measuredSent >= messages { break }
                } else if now - measureStart >= runNanos {
                    break
                }
            }
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
            if window > 0, published - BenchShared.slowest(progress) >= window {
                // Wait until every subscriber is half a window behind (one wake per half window).
                let target = published - window / 2
                for subscriber in progress where subscriber.accounted < target { await subscriber.wait(until: target) }
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

        // Wait for every subscriber to get everything (or give up after
        // 30 s), then stop them; each returns what it measured.
        let expected = published - rejected
        let deadline = ContinuousClock.now + .seconds(30)
        while BenchShared.slowest(progress) < expected && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let cpu = cpuWindow.flatMap { window in
            server.map { window.end(cpu: [$0.child.cpuSeconds()], delivered: progress.reduce(0) { $0 + $1.delivered }) }
        }
        let peakRSS = server?.peakRSS()
        let complete = BenchShared.slowest(progress) >= expected
        var results: [ConsumerResult] = []
        for consumer in consumers {
            consumer.task.cancel()
            if complete { results.append(try await consumer.task.value) }
        }
        trace("consumers done")
        let endWire = (publisherClient.wireBytes.sent, subscribersReceived())
        try? await publisherClient.close()
        for consumer in consumers { try? await consumer.client.close() }
        consumers.removeAll()

        guard complete else {
            let counts = progress.map { String($0.accounted) }.joined(separator: ", ")
            print("the subscribers did not receive (or hear of the loss of) all \(expected) messages within 30 s: \(counts)")
            throw ExitCode.failure
        }
        let lastDelivery = max(results.map(\.lastMeasuredAt).max() ?? 0, measureStart + 1)
        let deliverSeconds = Double(lastDelivery - measureStart) / 1e9
        let publishSeconds = Double(publishEnd - measureStart) / 1e9
        let delivered = results.reduce(0) { $0 + $1.measured }
        let lost = results.reduce(0) { $0 + $1.lost }
        let messagesPerSecond = Double(delivered) / deliverSeconds
        let megabytesPerSecond = Double(results.reduce(0) { $0 + $1.payloadBytes }) / deliverSeconds / 1e6
        let perSubscriber = results.map { Double($0.measured) / (Double(max($0.lastMeasuredAt, measureStart + 1) - measureStart) / 1e9) }
        var latency = ConsumerResult().latency
        for result in results { latency.add(result.latency) }
        let measuredCount = max(measuredSent, 1)
        let sentPerMessage = Double(endWire.0 - measureStartWire.0) / Double(measuredCount)
        let receivedPerMessage = Double(endWire.1 - measureStartWire.1) / Double(measuredCount * subscriberCount)

        let batching = [lingerMs.map { "linger_ms \($0)" }, batchBytes.map { "batch_bytes \($0)" }].compactMap { $0 }
        let audience = subscriberCount == 1 ? "" : "\(subscriberCount) subscribers, "
        print(
            "scenario \(scenario): \(audience)\(size)-byte payloads, \(rate.map { "paced at \($0) msgs/s" } ?? "unpaced"), in-flight \(inFlight)"
                + (batching.isEmpty ? "" : ", " + batching.joined(separator: ", ")) + ", \(baseURL)")
        print("load average at start: \(loadAtStart ?? "unknown")")
        let sum = subscriberCount == 1 ? "" : " (sum over the \(subscriberCount) subscribers)"
        print(
            String(
                format: "published %d (%d measured over %.2f s), rejected %d, delivered %d measured%@", published, measuredSent, publishSeconds,
                rejected, delivered, sum))
        print(String(format: "throughput: %.0f msgs/s delivered%@, %.1f MB/s payload", messagesPerSecond, sum, megabytesPerSecond))
        if subscriberCount > 1 {
            print("per subscriber: " + perSubscriber.map { String(format: "%.0f", $0) }.joined(separator: ", ") + " msgs/s delivered")
        }
        print("latency publish→deliver µs: \(latencySummary(latency, [50, 90, 99, 99.9]))")
        if lost > 0 {
            print("LOST \(lost) messages (gap records: a subscriber fell behind its queue bound); figures are not comparable")
        }
        print(
            String(
                format: "wire bytes per message: publisher sent %.1f, each subscriber received %.1f (HTTP/2 framing included)", sentPerMessage,
                receivedPerMessage))
        if let cpu {
            print(
                String(
                    format: "node CPU per delivered message: %.2f µs (user+system of the node, %.3f s over the measured window, %d deliveries)",
                    cpu.microsPerMessage, cpu.nodeSeconds.reduce(0, +), cpu.deliveries))
        }
        if let server {
            print("server peak RSS (VmHWM): \(peakRSS ?? "unknown") (pid \(server.child.process.processIdentifier))")
        }
        var line = ResultLine()
        line.add("scenario", scenario)
        line.add("subs", subscriberCount)
        line.add("payload", size)
        line.add("rate", rate ?? 0)
        line.add("published", published)
        line.add("delivered", delivered)
        line.add("lost", lost)
        line.add("secs", deliverSeconds, decimals: 3)
        line.add("delivered_msgs_per_s", messagesPerSecond)
        line.add("per_sub_min_msgs_per_s", perSubscriber.min() ?? 0)
        line.add("delivered_MB_per_s", megabytesPerSecond, decimals: 2)
        line.add("p50_us", Double(latency.valueAtPercentile(50)) / 1000, decimals: 1)
        line.add("p99_us", Double(latency.valueAtPercentile(99)) / 1000, decimals: 1)
        line.add("p999_us", Double(latency.valueAtPercentile(99.9)) / 1000, decimals: 1)
        line.add("max_us", Double(latency.max) / 1000, decimals: 1)
        line.add("node_cpu_us_per_msg", cpu.map { String(format: "%.3f", $0.microsPerMessage) } ?? "na")
        line.add("load1", loadAtStart.map { String($0.split(separator: " ")[0]) } ?? "?")
        print(line.text)
    }
}

/// What one subscriber's consumer task tells the publisher: how far it got,
/// and a wake-up when the publisher waits for it (the `--window` bound).
final class BenchShared: Sendable {
    /// Messages received or reported lost so far.
    private let count = Atomic<Int>(0)
    /// Messages received so far (what node CPU per delivered message counts).
    private let received = Atomic<Int>(0)
    private let ready = Atomic<Bool>(false)
    private let waiting = Atomic<Bool>(false)
    private let ended = Atomic<Bool>(false)
    private let waiter = Mutex<(target: Int, continuation: CheckedContinuation<Void, Never>)?>(nil)

    var accounted: Int { count.load(ordering: .relaxed) }
    var delivered: Int { received.load(ordering: .relaxed) }
    /// The stream is live (its first control record, the view, arrived).
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// The fewest messages any of `subscribers` accounted for.
    static func slowest(_ subscribers: [BenchShared]) -> Int {
        var least = Int.max
        for subscriber in subscribers { least = min(least, subscriber.accounted) }
        return least
    }

    func markReady() {
        if !ready.load(ordering: .relaxed) { ready.store(true, ordering: .releasing) }
    }

    /// Consumer: `total` messages are now accounted for, `delivered` of
    /// them received.
    func didReceive(_ total: Int, delivered: Int) {
        received.store(delivered, ordering: .relaxed)
        didReceive(total)
    }

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
