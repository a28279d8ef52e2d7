import PiglixGroups
import PiglixTopics

/// Throughput of the core alone: `n` `GroupNode`s wired by an in-memory
/// FIFO queue, no simulated latency, no I/O. Every node subscribes to the
/// topic and publishes in turn; every node delivers every message.
public enum CoreBenchmark {
    public struct Result: CustomStringConvertible, Sendable {
        public var nodes: Int
        public var level: DeliveryLevel
        public var payloadBytes: Int
        public var published: Int
        public var delivered: Int
        public var seconds: Double
        public var protocolMessages: Int
        public var maxBuffered: Int
        public var description: String {
            let rate = Double(delivered) / seconds
            return "bench \(level) nodes=\(nodes) payload=\(payloadBytes)B published=\(published) delivered=\(delivered) "
                + "in \(String(format2(seconds)))s: \(Int(rate)) delivered msgs/s, "
                + "\(String(format2(Double(protocolMessages) / Double(published)))) protocol msgs per multicast, max buffered per node \(maxBuffered)"
        }
    }

    struct Wire {
        var from: ProcessID
        var to: Int
        var message: ProtocolMessage
    }

    public static func run(nodes n: Int, messages: Int, payloadBytes: Int, level: DeliveryLevel) -> Result {
        var settings = GroupSettings()
        settings.heartbeatIntervalTicks = 10
        settings.suspicionTimeoutTicks = 1_000_000
        var cores = (0..<n).map { i in try! GroupNode(settings: settings, me: ProcessID(node: NodeID(UInt64(i + 1)), incarnation: 1)) }
        var queue: [Wire] = []
        var head = 0
        var effects: [GroupEffect] = []
        var delivered = 0
        var sent = 0
        var now: Tick = 0
        let seeds = (1...n).map { NodeID(UInt64($0)) }

        var tickets: [(Int, UInt64)] = []
        var chunks: [(Int, CheckpointChunk)] = []
        // Process ids never change here; reading `cores[i].me` would copy a
        // whole GroupNode out of the array.
        let mes = cores.map(\.me)
        func drain(_ i: Int, _ effects: inout [GroupEffect], _ queue: inout [Wire], _ delivered: inout Int, _ sent: inout Int) {
            let me = mes[i]
            for e in effects {
                switch e {
                case .send(let to, let m):
                    sent += 1
                    queue.append(Wire(from: me, to: Int(to.rawValue) - 1, message: m))
                case .deliver:
                    delivered += 1
                case .requestCheckpoint(let req):
                    tickets.append((i, req.ticket))
                case .applyCheckpointChunk(let chunk):
                    chunks.append((i, chunk))
                default:
                    break
                }
            }
            effects.removeAll(keepingCapacity: true)
        }
        func pump(_ cores: inout [GroupNode], _ queue: inout [Wire], _ head: inout Int, _ effects: inout [GroupEffect], _ delivered: inout Int, _ sent: inout Int, _ now: Tick) {
            while head < queue.count {
                let to = queue[head].to
                cores[to].onMessage(from: queue[head].from, queue[head].message, now: now, into: &effects)
                head += 1
                drain(to, &effects, &queue, &delivered, &sent)
            }
            queue.removeAll(keepingCapacity: true)
            head = 0
        }

        for i in 0..<n {
            cores[i].onStart(seeds: seeds, bootstrap: i == 0, now: now, into: &effects)
            drain(i, &effects, &queue, &delivered, &sent)
        }
        let pattern = try! TopicPattern("bench.>")
        for _ in 0..<20 {
            now += 10
            for i in 0..<n {
                cores[i].onTick(now: now, into: &effects)
                drain(i, &effects, &queue, &delivered, &sent)
            }
            pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
        }
        for i in 0..<n {
            effects = cores[i].onJoin(pattern, now: now)
            drain(i, &effects, &queue, &delivered, &sent)
        }
        for _ in 0..<20 {
            now += 10
            for i in 0..<n {
                cores[i].onTick(now: now, into: &effects)
                drain(i, &effects, &queue, &delivered, &sent)
            }
            pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
            let answer = tickets
            tickets.removeAll()
            for (i, t) in answer {
                effects = cores[i].onCheckpointChunk(ticket: t, state: [], last: true, now: now)
                drain(i, &effects, &queue, &delivered, &sent)
            }
            pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
            let applied = chunks
            chunks.removeAll()
            for (i, chunk) in applied {
                effects = cores[i].onCheckpointChunkApplied(chunk, ok: true, now: now)
                drain(i, &effects, &queue, &delivered, &sent)
            }
            pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
        }
        precondition(cores.allSatisfy { $0.currentView?.members.count == n }, "benchmark cluster did not form")
        let topic = try! Topic("bench.x")
        let payload = [UInt8](repeating: 0xAB, count: payloadBytes)
        delivered = 0
        sent = 0
        var maxBuffered = 0
        let clock = ContinuousClock()
        let start = clock.now
        for k in 0..<messages {
            let i = k % n
            let req = PublishRequest(token: UInt64(k), session: 1, destination: .topic(topic), level: level, payload: payload)
            cores[i].onPublish(req, now: now, into: &effects)
            drain(i, &effects, &queue, &delivered, &sent)
            pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
            if k % 512 == 511 {
                now += 10
                for j in 0..<n {
                    cores[j].onTick(now: now, into: &effects)
                    drain(j, &effects, &queue, &delivered, &sent)
                }
                pump(&cores, &queue, &head, &effects, &delivered, &sent, now)
                maxBuffered = max(maxBuffered, cores.map(\.bufferedMessageCount).max()!)
            }
        }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Result(nodes: n, level: level, payloadBytes: payloadBytes, published: messages, delivered: delivered, seconds: seconds, protocolMessages: sent, maxBuffered: maxBuffered)
    }
}

func format2(_ x: Double) -> String {
    let scaled = Int((x * 100).rounded())
    let frac = scaled % 100
    return "\(scaled / 100).\(frac < 10 ? "0" : "")\(frac)"
}

/// View-change time and protocol messages per multicast, from the simulator
/// with a fixed one-way latency (so one round trip is `2 × latency`).
public enum ScaleReport {
    public struct Row: Sendable {
        public var nodes: Int
        public var viewChangeRoundTrips: Double
        public var perMulticast: [DeliveryLevel: Double]
        public var heartbeatsPerNodePerInterval: Double
        public var row: String {
            "| \(nodes) | \(format2(viewChangeRoundTrips)) | \(format2(perMulticast[.fifo] ?? 0)) | \(format2(perMulticast[.total] ?? 0)) | \(format2(perMulticast[.safe] ?? 0)) | \(format2((perMulticast[.fifo] ?? 0) / Double(max(nodes - 1, 1)))) |"
        }
    }
    public static let header = "| nodes | view change (round trips) | msgs/multicast fifo | total | safe | fifo per (n-1) |\n|---|---|---|---|---|---|"

    public static func measure(nodes n: Int) -> Row {
        var config = SimulationConfig(seed: 42, nodes: n, faults: .none)
        config.latencyTicks = 5...5
        config.jitterTicks = 0...0
        config.settings.unstableMessagesMax = 8192
        var sim = Simulator(config: config)
        sim.recordTrace = false
        return sim.scaleRun()
    }
}

extension Simulator {
    mutating func scaleRun() -> ScaleReport.Row {
        let n = config.nodes
        let rtt = Double(2 * config.latencyTicks.lowerBound)
        for i in 0..<n {
            nodes[i].status = .down
            restart(i)
        }
        var t: UInt64 = 0
        while t < 200_000 {
            t += 100
            runUntil(t)
            if nodes.allSatisfy({ $0.core.currentView?.members.count == n }) && Set(nodes.map { $0.core.currentView!.id }).count == 1 { break }
        }
        runUntil(now + 200)
        var per: [DeliveryLevel: Double] = [:]
        let m = 20
        for level in DeliveryLevel.allCases {
            sentByKind = [:]
            for k in 0..<m {
                runUntil(now + 20)
                publish(k % n, destination: .topic(Self.topics[0]), level: level)
            }
            runUntil(now + 200)
            let total = sentByKind.filter { $0.key != "heartbeat" }.values.reduce(0, +)
            per[level] = Double(total) / Double(m)
        }
        // View change: crash the youngest member, time the flush.
        flushStartedAt = nil
        lastInstallAt = nil
        nodes[n - 1].status = .down
        nodes[n - 1].generation += 1
        runUntil(now + config.settings.suspicionTimeoutTicks * 10)
        var vc = 0.0
        if let s = flushStartedAt, let e = lastInstallAt { vc = Double(e - s) / rtt }
        return ScaleReport.Row(nodes: n, viewChangeRoundTrips: vc, perMulticast: per, heartbeatsPerNodePerInterval: Double(n - 1))
    }
}
