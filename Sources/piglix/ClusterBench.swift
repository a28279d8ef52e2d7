import ArgumentParser
import Foundation
import Histogram
import NIOCore
import PiglixClient
import PiglixWire
import Synchronization

/// `piglix bench --nodes 3`: the options of the cluster mode (the rest —
/// seconds, warm-up, rate, size, in-flight — are the single-node bench's).
struct ClusterBenchOptions: ParsableArguments {
    @Option(
        help: """
            Start a local cluster of this many nodes (3) on loopback and run the cluster scenarios: \
            fifo (publish on n1, subscribe on n2), fanout (publish on n1, one subscriber on every node), \
            total and safe (publish on n1, subscribe on n2), safe-paced (safe at --safe-rate), \
            view-change (SIGKILL n3, time until the survivors show the new view). \
            The scenario argument picks one; the default runs them all.
            """)
    var nodes: Int?
    @Option(help: "Cluster mode: --suspicion-timeout-ms of the nodes.")
    var suspicionTimeoutMs: Int = 500
    @Option(help: "Cluster mode: publish rate of the safe-paced scenario, msgs/s.")
    var safeRate: Int = 5000
    @Option(help: "Cluster mode: view changes to measure (SIGKILL n3, restart it, repeat).")
    var viewChanges: Int = 3
    @Option(help: "Cluster mode: publish streams on n1 (one connection each) sharing the rate; each is its own publisher session.")
    var publishers: Int = 1
}

/// The cluster scenarios, in the order `all` runs them.
enum ClusterScenario: String, CaseIterable {
    case fifo, fanout, total, safe
    case safePaced = "safe-paced"
    case viewChange = "view-change"
}

/// What one cluster run needs from the command line.
struct ClusterBenchPlan {
    var nodes: Int
    var scenarios: [ClusterScenario]
    var seconds: Double
    var warmup: Double
    var rate: Int?
    var size: Int
    var inFlight: Int
    var suspicionTimeoutMs: Int
    var safeRate: Int
    var viewChanges: Int
    var publishers: Int

    /// Validates the options; `scenario` is the bench's positional argument
    /// (`1to1`, its default, and `all` mean every cluster scenario).
    init(options: ClusterBenchOptions, scenario: String, seconds: Double, warmup: Double, rate: Int?, size: Int, inFlight: Int) throws {
        guard let nodes = options.nodes else { throw ValidationError("--nodes is missing") }
        guard nodes == 3 else { throw ValidationError("--nodes \(nodes): the cluster bench runs 3 nodes") }
        if scenario == "1to1" || scenario == "all" {
            scenarios = ClusterScenario.allCases
        } else if let one = ClusterScenario(rawValue: scenario) {
            scenarios = [one]
        } else {
            throw ValidationError(
                "unknown cluster scenario \(scenario); known: all, \(ClusterScenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard size >= 16 else { throw ValidationError("--size must be at least 16") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard options.safeRate > 0 else { throw ValidationError("--safe-rate must be positive") }
        guard options.suspicionTimeoutMs >= 300 else {
            throw ValidationError("--suspicion-timeout-ms must be at least 300 (3 heartbeats of 100 ms)")
        }
        guard options.viewChanges >= 1 else { throw ValidationError("--view-changes must be at least 1") }
        guard (1...64).contains(options.publishers) else { throw ValidationError("--publishers must be 1 to 64") }
        self.nodes = nodes
        self.seconds = seconds
        self.warmup = warmup
        self.rate = rate
        self.size = size
        self.inFlight = inFlight
        self.suspicionTimeoutMs = options.suspicionTimeoutMs
        self.safeRate = options.safeRate
        self.viewChanges = options.viewChanges
        self.publishers = options.publishers
    }
}

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
        var consumers: [(node: String, client: PiglixClient, progress: FlowProgress, task: Task<FlowConsumerResult, any Error>)] = []
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
        let measureEnd = measureStart + runNanos
        var publishers: [(client: PiglixClient, stream: PublishStream)] = [(publisherClient, try await publisherClient.publishStream(inFlightMax: plan.inFlight))]
        for _ in 1..<plan.publishers {
            let client = PiglixClient(host: "127.0.0.1", port: publishNode.httpPort)
            try await client.connect()
            publishers.append((client, try await client.publishStream(inFlightMax: plan.inFlight)))
        }
        let size = plan.size
        let count = publishers.count
        let cpuBefore = cluster.cpuSeconds()
        let runs = try await withThrowingTaskGroup(of: PublisherRun.self) { group in
            for (index, publisher) in publishers.enumerated() {
                let stream = publisher.stream
                let client = publisher.client
                group.addTask {
                    try await publishLoop(
                        stream: stream, client: client, topic: topic, delivery: delivery, size: size, offset: Double(index) / Double(count),
                        interval: interval, begin: begin, beginInstant: beginInstant, measureStart: measureStart, measureEnd: measureEnd)
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
        var results: [(node: String, result: FlowConsumerResult)] = []
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
            "scenario \(name): \(delivery.name), publish on \(publishNode.name), subscribe on \(sinks), \(plan.size)-byte payloads, \(pacing), \(streams), in-flight \(plan.inFlight) per stream"
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
        var merged = FlowConsumerResult().latency
        var totalMeasured = 0
        var slowest = 0.0
        for (node, result) in results {
            let lastDelivery = max(result.lastMeasuredAt, measureStart + 1)
            let seconds = Double(lastDelivery - measureStart) / 1e9
            slowest = max(slowest, seconds)
            totalMeasured += result.measured
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
    }

    /// One publisher's part of a run: sends until `measureEnd`, paced when
    /// `interval` (ns between its own sends) is set, starting `offset` of an
    /// interval late so several publishers interleave.
    static func publishLoop(
        stream: PublishStream, client: PiglixClient, topic: String, delivery: DeliveryLevel, size: Int, offset: Double, interval: Double?,
        begin: UInt64, beginInstant: ContinuousClock.Instant, measureStart: UInt64, measureEnd: UInt64
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

    static func percentiles(_ h: Histogram<UInt64>) -> String {
        func micros(_ p: Double) -> String { String(format: "%.0f", Double(h.valueAtPercentile(p)) / 1000) }
        return "p50 \(micros(50)) p99 \(micros(99)) p99.9 \(micros(99.9)) max \(String(format: "%.0f", Double(h.max) / 1000))"
    }

    static func consume(_ subscription: Subscription, progress: FlowProgress) async throws -> FlowConsumerResult {
        var result = FlowConsumerResult()
        for try await record in subscription {
            switch record {
            case .message(let message):
                let now = monotonicNanos()
                let payload = message.payload
                guard let sentAt: UInt64 = payload.getInteger(at: payload.readerIndex),
                    let measured: UInt8 = payload.getInteger(at: payload.readerIndex + 8)
                else { continue }
                result.received += 1
                if measured == 1 {
                    result.measured += 1
                    result.payloadBytes += payload.readableBytes
                    _ = result.latency.record(now &- sentAt)
                    result.lastMeasuredAt = now
                }
            case .control(.gap(let lost, _)):
                result.lost += Int(lost)
            case .control:
                break
            }
            if !progress.ready.load(ordering: .relaxed) { progress.ready.store(true, ordering: .releasing) }
            progress.accounted.store(result.received + result.lost, ordering: .relaxed)
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

struct FlowConsumerResult: Sendable {
    var received = 0
    var lost = 0
    var measured = 0
    var payloadBytes = 0
    var lastMeasuredAt: UInt64 = 0
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
}

final class FlowProgress: Sendable {
    /// The stream started (its first record arrived).
    let ready = Atomic<Bool>(false)
    /// Messages received plus messages a gap record said were lost.
    let accounted = Atomic<Int>(0)
}

// MARK: - The local cluster

/// `piglix serve` children forming one cluster on loopback. Their stderr
/// goes to one log file per node.
final class LocalCluster {
    struct Node {
        var name: String
        var httpPort: Int
        var clusterPort: Int
    }

    let nodes: [Node]
    let suspicionTimeoutMs: Int
    let logDirectory: String
    private var processes: [Process?]

    init(count: Int, suspicionTimeoutMs: Int) throws {
        var ports = Set<Int>()
        while ports.count < 2 * count { ports.insert(try loopbackFreePort()) }
        let list = Array(ports)
        nodes = (0..<count).map { Node(name: "n\($0 + 1)", httpPort: list[2 * $0], clusterPort: list[2 * $0 + 1]) }
        self.suspicionTimeoutMs = suspicionTimeoutMs
        logDirectory = NSTemporaryDirectory() + "piglix-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        processes = Array(repeating: nil, count: count)
    }

    /// Spawns every node and waits for one view of all of them; returns the
    /// seconds that took.
    func start() async throws -> Double {
        let began = monotonicNanos()
        for index in nodes.indices { try spawn(index) }
        try await awaitFullView(timeout: .seconds(30))
        return Double(monotonicNanos() - began) / 1e9
    }

    private func spawn(_ index: Int) throws {
        let node = nodes[index]
        let seeds = nodes.map { "127.0.0.1:\($0.clusterPort)" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = [
            "serve", "--node-id", node.name, "--listen", "127.0.0.1:\(node.httpPort)", "--cluster-listen", "127.0.0.1:\(node.clusterPort)",
            "--seeds", seeds, "--suspicion-timeout-ms", String(suspicionTimeoutMs), "--log-level", "warning",
        ]
        let logPath = "\(logDirectory)/\(node.name).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        if let log = FileHandle(forWritingAtPath: logPath) {
            log.seekToEndOfFile()
            process.standardError = log
            process.standardOutput = log
        }
        try process.run()
        ChildReaper.add(process.processIdentifier)
        processes[index] = process
    }

    /// Waits until every running node reports the same primary view of all nodes.
    func awaitFullView(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            var views: [UInt64] = []
            for index in nodes.indices {
                guard let process = processes[index], process.isRunning else {
                    throw ClusterBenchFailure("\(nodes[index].name) is not running (see \(logDirectory)/\(nodes[index].name).log)")
                }
                if let status = try? status(of: index), status.primary, status.members.count == nodes.count { views.append(status.view) }
            }
            if views.count == nodes.count && Set(views).count == 1 { return }
            guard ContinuousClock.now < deadline else {
                let seen = nodes.indices.map { index in
                    (try? status(of: index)).map { "\(nodes[index].name): view \($0.view) \($0.members)" } ?? "\(nodes[index].name): no answer"
                }
                throw ClusterBenchFailure("no view of \(nodes.count) members on every node within \(timeout): \(seen.joined(separator: "; "))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func status(of index: Int) throws -> ClusterInfo {
        let (status, body) = try httpGet(port: nodes[index].httpPort, path: "/v1/cluster")
        guard status == 200 else { throw ClusterBenchFailure("GET /v1/cluster on \(nodes[index].name): HTTP \(status)") }
        return try JSONDecoder().decode(ClusterInfo.self, from: Data(body))
    }

    /// User plus system CPU seconds of each node so far (0 for one not
    /// running), then of this process (the bench's clients).
    func cpuSeconds() -> [Double] {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var out: [Double] = processes.map { process in
            guard let process, process.isRunning,
                let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { return 0 }
            // Fields after "(comm)": state is field 3; utime, stime are 14, 15.
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
            return (user + system) / ticks
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        out.append(
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6)
        return out
    }

    func kill(_ index: Int) {
        guard let process = processes[index] else { return }
        let pid = process.processIdentifier
        if process.isRunning { _ = Glibc.kill(pid, SIGKILL) }
        process.waitUntilExit()
        ChildReaper.remove(pid)
        processes[index] = nil
    }

    func restart(_ index: Int) throws {
        kill(index)
        try spawn(index)
    }

    func printPeakRSS() {
        var parts: [String] = []
        for (index, process) in processes.enumerated() {
            guard let process, process.isRunning,
                let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
            else { continue }
            for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
                parts.append("\(nodes[index].name) \(line.dropFirst(6).trimmingCharacters(in: .whitespaces))")
            }
        }
        if !parts.isEmpty { print("\nnode peak RSS (VmHWM): \(parts.joined(separator: ", "))") }
    }

    /// SIGTERM, then SIGKILL whatever is still running after 2 s.
    func stopAll() {
        for process in processes.compactMap({ $0 }) where process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGTERM) }
        for process in processes.compactMap({ $0 }) {
            for _ in 0..<100 where process.isRunning { usleep(20_000) }
            if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            ChildReaper.remove(process.processIdentifier)
        }
        processes = Array(repeating: nil, count: nodes.count)
    }
}

/// `GET /v1/cluster`.
struct ClusterInfo: Decodable {
    var node: String
    var view: UInt64
    var members: [String]
    var primary: Bool
}

/// Kills the bench's children when the bench itself is interrupted
/// (SIGINT, SIGTERM, SIGHUP); errors and normal exits stop them in `defer`.
/// The handler is a plain C signal handler: it only reads a fixed table of
/// pids and calls `kill` and `_exit`, which are async-signal-safe.
enum ChildReaper {
    static let capacity = 16
    /// Child pids, 0 for a free slot; written by the bench task only.
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Int32> = {
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        return slots
    }()
    static let signals = [SIGINT, SIGTERM, SIGHUP]

    static func add(_ pid: Int32) {
        for i in 0..<capacity where slots[i] == 0 {
            slots[i] = pid
            return
        }
    }

    static func remove(_ pid: Int32) {
        for i in 0..<capacity where slots[i] == pid { slots[i] = 0 }
    }

    final class Handlers {
        func cancel() {
            for signalNumber in ChildReaper.signals { signal(signalNumber, SIG_DFL) }
        }
    }

    static func install() -> Handlers {
        _ = slots
        for signalNumber in signals { signal(signalNumber, reaperSignalHandler) }
        return Handlers()
    }
}

private func reaperSignalHandler(_ signalNumber: Int32) {
    for i in 0..<ChildReaper.capacity {
        let pid = ChildReaper.slots[i]
        if pid > 0 { _ = kill(pid, SIGKILL) }
    }
    let message: StaticString = "piglix bench: interrupted, killed the cluster nodes\n"
    _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
    _exit(128 + signalNumber)
}

// MARK: - Small blocking helpers (loopback only)

/// A port the kernel picks for a socket bound to 127.0.0.1:0, then released.
func loopbackFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ValidationError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var address = loopbackAddress(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw ValidationError("bind() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

private func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// A one-shot HTTP/1.1 GET to 127.0.0.1 (`Connection: close`), blocking,
/// with a 1 s timeout: returns the status and the body.
func httpGet(port: Int, path: String) throws -> (Int, [UInt8]) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClusterBenchFailure("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = loopbackAddress(port: port)
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { throw ClusterBenchFailure("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
        throw ClusterBenchFailure("send to 127.0.0.1:\(port) failed: errno \(errno)")
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw ClusterBenchFailure("recv from 127.0.0.1:\(port) failed: errno \(errno)") }
        if n == 0 { break }
        response.append(contentsOf: chunk[0..<n])
    }
    let separator: [UInt8] = [13, 10, 13, 10]
    guard let end = response.indices.first(where: { response[$0...].starts(with: separator) }) else {
        throw ClusterBenchFailure("malformed HTTP response from 127.0.0.1:\(port)")
    }
    let head = String(decoding: response[..<end], as: UTF8.self)
    let statusLine = head.split(separator: "\r\n").first ?? ""
    let fields = statusLine.split(separator: " ")
    guard fields.count >= 2, let status = Int(fields[1]) else { throw ClusterBenchFailure("malformed status line \(statusLine)") }
    var body = Array(response[(end + 4)...])
    if head.lowercased().contains("transfer-encoding: chunked") { body = dechunk(body) }
    return (status, body)
}

/// The payload of a chunked HTTP/1.1 body.
private func dechunk(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        guard let lineEnd = (i..<bytes.count - 1).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }) else { break }
        let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
        guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
        let start = lineEnd + 2
        guard start + size <= bytes.count else { break }
        out.append(contentsOf: bytes[start..<(start + size)])
        i = start + size + 2
    }
    return out
}
