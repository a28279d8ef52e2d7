import ArgumentParser
import Foundation
import Histogram
import NIOCore
import PiglixClient
import PiglixWire
import Synchronization

// MARK: - The run

enum ClusterBench {
    static func run(_ plan: ClusterBenchPlan) async throws {
        let reaper = ChildReaper.install()
        defer { reaper.cancel() }
        let cluster = try LocalCluster(count: plan.nodes, suspicionTimeoutMs: plan.suspicionTimeoutMs)
        defer { cluster.stopAll() }
        let formed = try await cluster.start()
        print(
            "cluster: \(plan.nodes) nodes on loopback, suspicion timeout \(plan.suspicionTimeoutMs) ms, "
                + String(format: "view of %d members on every node %.0f ms after spawn", plan.nodes, formed * 1000))
        for node in cluster.nodes {
            print("  \(node.name): http 127.0.0.1:\(node.httpPort), cluster 127.0.0.1:\(node.clusterPort)")
        }
        print("logs: \(cluster.logDirectory)")
        BenchSystem.printLoadAverage()
        var failed = false
        for scenario in plan.scenarios {
            print("")
            do {
                switch scenario {
                case .fifo:
                    try await runFlow(plan, cluster, name: "fifo", delivery: .fifo, subscribers: [1], rate: plan.rate)
                case .fanout:
                    try await runFlow(plan, cluster, name: "fanout", delivery: .fifo, subscribers: Array(cluster.nodes.indices), rate: plan.rate)
                case .total:
                    try await runFlow(plan, cluster, name: "total", delivery: .total, subscribers: [1], rate: plan.rate)
                case .safe:
                    try await runFlow(plan, cluster, name: "safe", delivery: .safe, subscribers: [1], rate: plan.rate)
                case .safePaced:
                    try await runFlow(plan, cluster, name: "safe-paced", delivery: .safe, subscribers: [1], rate: plan.safeRate)
                case .viewChange:
                    try await runViewChanges(plan, cluster)
                }
            } catch let error as ClusterBenchFailure {
                print("scenario \(scenario.rawValue) failed: \(error.reason)")
                failed = true
                // A scenario that failed may have left the cluster without a
                // full view: the next one needs it whole.
                try await cluster.awaitFullView(timeout: .seconds(15))
            }
        }
        cluster.printPeakRSS()
        if failed { throw ExitCode.failure }
    }

    // MARK: Throughput and latency

    /// One publisher on n1 (a streaming POST /v1/publish with binary frames)
    /// and one subscriber on each node of `subscribers` (indices), all on
    /// one fresh topic. Payloads carry the publisher's CLOCK_MONOTONIC, so
    /// publish→deliver latency is measured per message in this one process.
    static func runFlow(
        _ plan: ClusterBenchPlan, _ cluster: LocalCluster, name: String, delivery: DeliveryLevel, subscribers: [Int], rate: Int?
    ) async throws {
        let publishNode = cluster.nodes[0]
        let topic = "bench.\(name.replacingOccurrences(of: "-", with: "_")).\(UInt32.random(in: 0...UInt32.max))"
        let publisherClient = PiglixClient(host: "127.0.0.1", port: publishNode.httpPort)
        try await publisherClient.connect()
        var consumers: [(node: String, client: PiglixClient, progress: FlowProgress, task: Task<ConsumerResult, any Error>)] = []
        defer {
            for consumer in consumers { consumer.task.cancel() }
        }
        for index in subscribers {
            let node = cluster.nodes[index]
            let client = PiglixClient(host: "127.0.0.1", port: node.httpPort)
            try await client.connect()
            let progress = FlowProgress()
            let subscription = client.subscribe(patterns: [topic], format: .binary)
            let task = Task { try await consume(subscription, progress: progress) }
            consumers.append((node.name, client, progress, task))
        }
        // The stream starts (with its `view` record) once the node joined
        // the group, state transfer included.
        let readyBy = ContinuousClock.now + .seconds(15)
        while !consumers.allSatisfy({ $0.progress.ready.load(ordering: .acquiring) }) {
            guard ContinuousClock.now < readyBy else { throw ClusterBenchFailure("the subscribers did not start within 15 s") }
            try await Task.sleep(for: .milliseconds(2))
        }
        trace("\(name): subscribers ready")

        // The publishers: one connection and one stream each, sharing the
        // rate; one clock decides when measuring starts and ends for all.
        let warmupNanos = UInt64(plan.warmup * 1e9)
        let runNanos = UInt64(plan.seconds * 1e9)
        let interval = rate.map { 1e9 / Double($0) * Double(plan.publishers) }
        let beginInstant = ContinuousClock.now
        let begin = monotonicNanos()
        let measureStart = begin + warmupNanos
        // A fixed-count run (`--messages`) ends when each publisher sent its
        // share, not at a time.
        let measureEnd = plan.messages == nil ? measureStart + runNanos : UInt64.max
        var publishers: [(client: PiglixClient, stream: PublishStream)] = [(publisherClient, try await publisherClient.publishStream(inFlightMax: plan.inFlight))]
        for _ in 1..<plan.publishers {
            let client = PiglixClient(host: "127.0.0.1", port: publishNode.httpPort)
            try await client.connect()
            publishers.append((client, try await client.publishStream(inFlightMax: plan.inFlight)))
        }
        let size = plan.size
        let count = publishers.count
        let loadAtStart = BenchSystem.loadAverage()
        let cpuBefore = cluster.cpuSeconds()
        // Node CPU and deliveries when measuring starts: the start of the
        // window for node CPU per delivered message.
        let pids = cluster.nodePIDs()
        let progresses = consumers.map(\.progress)
        let windowStart = Task { () -> NodeCPUWindow in
            try? await Task.sleep(until: beginInstant + .nanoseconds(Int64(warmupNanos)), clock: .continuous)
            return NodeCPUWindow(
                cpuAtStart: pids.map { BenchSystem.cpuSeconds(pid: $0) ?? 0 }, deliveredAtStart: FlowProgress.delivered(progresses))
        }
        let runs = try await withThrowingTaskGroup(of: PublisherRun.self) { group in
            for (index, publisher) in publishers.enumerated() {
                let stream = publisher.stream
                let client = publisher.client
                let quota = plan.messages.map { $0 / count + (index < $0 % count ? 1 : 0) }
                group.addTask {
                    try await publishLoop(
                        stream: stream, client: client, topic: topic, delivery: delivery, size: size, offset: Double(index) / Double(count),
                        interval: interval, begin: begin, beginInstant: beginInstant, measureStart: measureStart, measureEnd: measureEnd,
                        measuredQuota: quota)
                }
            }
            var runs: [PublisherRun] = []
            for try await run in group { runs.append(run) }
            return runs
        }
        let publishEnd = runs.map(\.publishEnd).max() ?? measureEnd
        let published = runs.reduce(0) { $0 + $1.published }
        let measuredSent = runs.reduce(0) { $0 + $1.measuredSent }
        let ackedWhileMeasuring = runs.reduce(0) { $0 + $1.ackedAtEnd - $1.ackedAtStart }
        let wireSent = runs.reduce(0) { $0 + $1.wireSentWhileMeasuring }
        for publisher in publishers { try await publisher.stream.finish() }
        let finished = monotonicNanos()
        let cpuAfter = cluster.cpuSeconds()
        let rejected = publishers.reduce(0) { $0 + $1.stream.counts.rejected }
        trace("\(name): published \(published), rejected \(rejected)")
        for publisher in publishers.dropFirst() { try? await publisher.client.close() }

        // Every subscriber gets everything accepted (or gives up after 15 s).
        let expected = published - rejected
        let deadline = ContinuousClock.now + .seconds(15)
        while consumers.contains(where: { $0.progress.accounted.load(ordering: .relaxed) < expected }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let nodeCPU = await windowStart.value.end(
            cpu: pids.map { BenchSystem.cpuSeconds(pid: $0) ?? 0 }, delivered: FlowProgress.delivered(progresses))
        var results: [(node: String, result: ConsumerResult)] = []
        var incomplete: [String] = []
        for consumer in consumers {
            let accounted = consumer.progress.accounted.load(ordering: .relaxed)
            consumer.task.cancel()
            if accounted < expected {
                incomplete.append("\(consumer.node) has \(accounted) of \(expected)")
                continue
            }
            results.append((consumer.node, try await consumer.task.value))
        }
        consumers.removeAll()
        try? await publisherClient.close()

        let pacing = rate.map { "paced at \($0) msgs/s" } ?? "unpaced"
        let sinks = subscribers.map { cluster.nodes[$0].name }.joined(separator: ",")
        let streams = plan.publishers == 1 ? "1 publish stream" : "\(plan.publishers) publish streams (connections) sharing the rate"
        print(
            "scenario \(name): \(delivery.name), publish on \(publishNode.name), subscribe on \(sinks), \(plan.size)-byte payloads, \(pacing), \(streams), in-flight \(plan.inFlight) per stream; load average at start \(loadAtStart ?? "unknown")"
        )
        let publishSeconds = Double(publishEnd - measureStart) / 1e9
        print(
            String(
                format: "published %d (%d measured over %.2f s), rejected %d, publisher acks %.0f/s while measuring, stream finished %.0f ms after the last send",
                published, measuredSent, publishSeconds, rejected, Double(ackedWhileMeasuring) / publishSeconds,
                Double(finished - publishEnd) / 1e6))
        guard incomplete.isEmpty else {
            throw ClusterBenchFailure("subscribers incomplete after 15 s: \(incomplete.joined(separator: "; "))")
        }
        var merged = ConsumerResult().latency
        var totalMeasured = 0
        var totalLost = 0
        var slowest = 0.0
        var perSubscriber: [Double] = []
        for (node, result) in results {
            let lastDelivery = max(result.lastMeasuredAt, measureStart + 1)
            let seconds = Double(lastDelivery - measureStart) / 1e9
            slowest = max(slowest, seconds)
            totalMeasured += result.measured
            totalLost += result.lost
            perSubscriber.append(Double(result.measured) / seconds)
            merged.add(result.latency)
            let lost = result.lost > 0 ? ", LOST \(result.lost) (gap records)" : ""
            print(
                String(
                    format: "  %@: throughput %.0f msgs/s delivered, %.1f MB/s payload; latency µs %@%@", node,
                    Double(result.measured) / seconds, Double(result.payloadBytes) / seconds / 1e6, percentiles(result.latency), lost))
        }
        if results.count > 1 {
            print(String(format: "  all: %.0f deliveries/s over the %d subscribers; latency µs %@", Double(totalMeasured) / slowest, results.count, percentiles(merged)))
        }
        print(String(format: "  publisher wire bytes sent per message: %.1f", Double(wireSent) / Double(max(measuredSent, 1))))
        // CPU time per message is what a busy shared machine does not distort much.
        let cpu = zip(cpuBefore, cpuAfter).enumerated().map { index, pair in
            let name = index < cluster.nodes.count ? cluster.nodes[index].name : "bench"
            return String(format: "%@ %.1f", name, (pair.1 - pair.0) / Double(max(published, 1)) * 1e6)
        }
        print(
            String(
                format: "  CPU µs per published message (user+system, whole run incl. warm-up, %.2f s wall): %@", Double(finished - begin) / 1e9,
                cpu.joined(separator: ", ")))
        let nodeParts = zip(cluster.nodes, nodeCPU.nodeSeconds).map { String(format: "%@ %.3f s", $0.name, $1) }
        print(
            String(
                format: "  node CPU per delivered message: %.2f µs (user+system summed over the nodes: %@ over the measured window, %d deliveries)",
                nodeCPU.microsPerMessage, nodeParts.joined(separator: " + "), nodeCPU.deliveries))
        let measuredSeconds = max(slowest, 1e-9)
        var line = ResultLine()
        line.add("scenario", name)
        line.add("nodes", cluster.nodes.count)
        line.add("delivery", delivery.name)
        line.add("subs", results.count)
        line.add("payload", plan.size)
        line.add("rate", rate ?? 0)
        line.add("published", published)
        line.add("delivered", totalMeasured)
        line.add("lost", totalLost)
        line.add("secs", measuredSeconds, decimals: 3)
        line.add("delivered_msgs_per_s", Double(totalMeasured) / measuredSeconds)
        line.add("per_sub_min_msgs_per_s", perSubscriber.min() ?? 0)
        line.add("p50_us", Double(merged.valueAtPercentile(50)) / 1000, decimals: 1)
        line.add("p99_us", Double(merged.valueAtPercentile(99)) / 1000, decimals: 1)
        line.add("p999_us", Double(merged.valueAtPercentile(99.9)) / 1000, decimals: 1)
        line.add("max_us", Double(merged.max) / 1000, decimals: 1)
        line.add("node_cpu_us_per_msg", nodeCPU.microsPerMessage, decimals: 3)
        line.add("load1", loadAtStart.map { String($0.split(separator: " ")[0]) } ?? "?")
        print(line.text)
    }

    /// One publisher's part of a run: sends until `measureEnd`, paced when
    /// `interval` (ns between its own sends) is set, starting `offset` of an
    /// interval late so several publishers interleave.
    static func publishLoop(
        stream: PublishStream, client: PiglixClient, topic: String, delivery: DeliveryLevel, size: Int, offset: Double, interval: Double?,
        begin: UInt64, beginInstant: ContinuousClock.Instant, measureStart: UInt64, measureEnd: UInt64, measuredQuota: Int? = nil
    ) async throws -> PublisherRun {
        var run = PublisherRun()
        var payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
        var measuring = false
        var wireAtStart = client.wireBytes.sent
        while true {
            let now = monotonicNanos()
            if !measuring && now >= measureStart {
                measuring = true
                run.ackedAtStart = stream.counts.acked
                wireAtStart = client.wireBytes.sent
            }
            if now >= measureEnd { break }
            if let measuredQuota, run.measuredSent >= measuredQuota { break }
            if let interval {
                let due = (Double(run.published) + offset) * interval
                if Double(now - begin) < due {
                    try await Task.sleep(until: beginInstant + .nanoseconds(Int64(due)), clock: .continuous)
                }
            }
            let sentAt = interval == nil ? now : monotonicNanos()
            payload.setInteger(sentAt, at: 0)
            payload.setInteger(UInt8(measuring ? 1 : 0), at: 8)
            try await stream.send(PublishRecord(topic: topic, payload: payload, delivery: delivery))
            run.published += 1
            if measuring { run.measuredSent += 1 }
        }
        run.publishEnd = monotonicNanos()
        run.ackedAtEnd = stream.counts.acked
        run.wireSentWhileMeasuring = client.wireBytes.sent - wireAtStart
        return run
    }

    static func percentiles(_ histogram: Histogram<UInt64>) -> String { latencySummary(histogram, [50, 99, 99.9]) }

    static func consume(_ subscription: Subscription, progress: FlowProgress) async throws -> ConsumerResult {
        var result = ConsumerResult()
        for try await record in subscription {
            if !result.count(record), case .message = record { continue }
            if !progress.ready.load(ordering: .relaxed) { progress.ready.store(true, ordering: .releasing) }
            progress.accounted.store(result.accounted, ordering: .relaxed)
            progress.delivered.store(result.received, ordering: .relaxed)
        }
        return result
    }

    // MARK: View change

    /// SIGKILLs the last node (it publishes nothing and coordinates
    /// nothing) and polls every survivor's /v1/cluster until all show one
    /// view without it; then restarts it and waits for the full view again.
    static func runViewChanges(_ plan: ClusterBenchPlan, _ cluster: LocalCluster) async throws {
        let victim = cluster.nodes.count - 1
        let survivors = cluster.nodes.indices.filter { $0 != victim }
        let timeout = Double(plan.suspicionTimeoutMs)
        print(
            "scenario view-change: SIGKILL \(cluster.nodes[victim].name), poll /v1/cluster on \(survivors.map { cluster.nodes[$0].name }.joined(separator: ",")) every 1 ms until all show the same \(survivors.count)-member view; suspicion timeout \(plan.suspicionTimeoutMs) ms, heartbeat 100 ms"
        )
        var samples: [Double] = []
        for run in 1...plan.viewChanges {
            let before = try cluster.status(of: 0)
            let killedAt = monotonicNanos()
            cluster.kill(victim)
            var seen: [Int: (ms: Double, view: UInt64)] = [:]
            let deadline = killedAt + UInt64(10 * timeout * 1e6)
            while seen.count < survivors.count {
                for index in survivors where seen[index] == nil {
                    guard let status = try? cluster.status(of: index) else { continue }
                    if status.members.count == survivors.count, !status.members.contains(cluster.nodes[victim].name), status.view > before.view {
                        seen[index] = (Double(monotonicNanos() - killedAt) / 1e6, status.view)
                    }
                }
                guard monotonicNanos() < deadline else {
                    throw ClusterBenchFailure("no new view on every survivor within 10 suspicion timeouts (seen: \(seen))")
                }
                usleep(1000)
            }
            let views = Set(seen.values.map(\.view))
            let last = seen.values.map(\.ms).max()!
            samples.append(last)
            let each = survivors.map { String(format: "%@ %.0f ms", cluster.nodes[$0].name, seen[$0]!.ms) }.joined(separator: ", ")
            print(
                String(
                    format: "  run %d: view %llu → %@ on all survivors after %.0f ms = %.2f suspicion timeouts (%@)", run, before.view,
                    views.sorted().map(String.init).joined(separator: "/"), last, last / timeout, each))
            if run < plan.viewChanges {
                try cluster.restart(victim)
                try await cluster.awaitFullView(timeout: .seconds(30))
            }
        }
        let worst = samples.max()!
        let mean = samples.reduce(0, +) / Double(samples.count)
        print(String(format: "  view change: mean %.0f ms, worst %.0f ms = %.2f suspicion timeouts (target ≤ 3)", mean, worst, worst / timeout))
    }
}

/// A scenario that could not finish: reported, and the run goes on.
struct ClusterBenchFailure: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

struct PublisherRun: Sendable {
    var published = 0
    var measuredSent = 0
    var ackedAtStart = 0
    var ackedAtEnd = 0
    var wireSentWhileMeasuring = 0
    var publishEnd: UInt64 = 0
}

final class FlowProgress: Sendable {
    /// The stream started (its first record arrived).
    let ready = Atomic<Bool>(false)
    /// Messages received plus messages a gap record said were lost.
    let accounted = Atomic<Int>(0)
    /// Messages received.
    let delivered = Atomic<Int>(0)

    /// Messages received by all of `subscribers`.
    static func delivered(_ subscribers: [FlowProgress]) -> Int {
        subscribers.reduce(0) { $0 + $1.delivered.load(ordering: .relaxed) }
    }
}
