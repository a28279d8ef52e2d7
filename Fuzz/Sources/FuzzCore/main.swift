// The virtual-synchrony core fed by a hostile peer: a 3-node in-memory
// cluster is brought to one stable view (with a group joined and a few
// messages at every delivery level) once; each input then starts from a
// copy of it and is read as steps `(control byte, MessageCodec-encoded
// message)`. The control byte picks the receiving node (low 2 bits), the
// claimed sender (next 2 bits: one of the other members or a stranger),
// whether the sender claims a later incarnation (0x20), whether the
// cluster's own traffic is pumped after the step (0x40) and whether time
// advances a heartbeat (0x80). Only messages that decode are fed, as
// `ClusterNode.received` does. Properties: no trap (the core's
// preconditions included), bounded work and memory per input.
#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics

struct Cluster: Sendable {
    var nodes: [GroupNode]
    var queue: [(from: ProcessID, to: NodeID, message: ProtocolMessage)] = []
    var now: Tick = 0
    var deliveries = 0
    /// Every message the cluster sent, for the seed corpus.
    var trace: [(to: Int, from: Int, message: ProtocolMessage)] = []
    var tracing = false
    var pumpBudget = 2_000

    static var settings: GroupSettings {
        var s = GroupSettings()
        s.heartbeatIntervalTicks = 10
        s.suspicionTimeoutTicks = 50
        s.deliverUnmatched = true
        // Small, so "bounded" is exercised within the input sizes fuzzed.
        s.futureMessagesMax = 256
        s.transferBufferMax = 256
        s.pendingPublishesMax = 256
        return s
    }

    func index(of node: NodeID) -> Int? { nodes.firstIndex { $0.me.node == node } }

    mutating func apply(_ i: Int, _ effects: [GroupEffect]) {
        let me = nodes[i].me
        for effect in effects {
            switch effect {
            case .send(let to, let message):
                queue.append((me, to, message))
                if tracing, let t = index(of: to) { trace.append((t, i, message)) }
            case .deliver:
                deliveries += 1
            case .requestCheckpoint(let request):
                let more = nodes[i].onCheckpointChunk(ticket: request.ticket, state: Array("state".utf8), last: true, now: now)
                apply(i, more)
            case .applyCheckpointChunk(let chunk):
                apply(i, nodes[i].onCheckpointChunkApplied(chunk, ok: true, now: now))
            default:
                break
            }
        }
    }

    mutating func pump() {
        var k = 0
        while k < queue.count && pumpBudget > 0 {
            let (from, to, message) = queue[k]
            k += 1
            pumpBudget -= 1
            guard let i = index(of: to) else { continue }
            let effects = nodes[i].onMessage(from: from, message, now: now)
            apply(i, effects)
        }
        queue.removeAll()
    }

    mutating func tick() {
        now += Self.settings.heartbeatIntervalTicks
        for i in nodes.indices { apply(i, nodes[i].onTick(now: now)) }
    }

    var stable: Bool {
        let views = nodes.compactMap(\.currentView)
        return views.count == nodes.count && Set(views.map(\.id)).count == 1 && views[0].members.count == nodes.count
    }

    static func started() -> Cluster {
        let ids = (1...3).map { ProcessID(node: NodeID(UInt64($0) * 1000), incarnation: 1) }
        var c = Cluster(nodes: ids.map { try! GroupNode(settings: settings, me: $0) })
        for i in c.nodes.indices {
            c.apply(i, c.nodes[i].onStart(seeds: ids.map(\.node), bootstrap: i == 0, now: 0))
        }
        c.pump()
        var k = 0
        while !c.stable && k < 500 {
            c.pumpBudget = .max
            c.tick()
            c.pump()
            k += 1
        }
        precondition(c.stable, "the harness cluster did not reach one view")
        let pattern = try! TopicPattern("g.*")
        for i in c.nodes.indices { c.apply(i, c.nodes[i].onJoin(pattern, now: c.now)) }
        c.pumpBudget = .max
        c.pump()
        c.tracing = true
        for (n, level) in [DeliveryLevel.fifo, .total, .safe].enumerated() {
            let topic = Destination.topic(try! Topic("a.b"))
            let request = PublishRequest(token: UInt64(n), session: 1, destination: topic, level: level, payload: Array("m\(n)".utf8))
            c.apply(n, c.nodes[n].onPublish(request, now: c.now))
            let group = PublishRequest(
                token: UInt64(n + 10), session: 1, destination: .group(pattern), level: level, payload: Array("g\(n)".utf8))
            c.apply(n, c.nodes[n].onPublish(group, now: c.now))
        }
        c.pump()
        for _ in 0..<3 {
            c.tick()
            c.pump()
        }
        c.tracing = false
        c.pumpBudget = 2_000
        return c
    }
}

let initial = Cluster.started()

/// `FUZZCORE_SUPPRESS_KNOWN=1` drops the messages of the crashes already
/// listed in Fuzz/crashes/FuzzCore/README.md, so a run finds new ones
/// instead of the same one again.
let suppressKnown = getenv("FUZZCORE_SUPPRESS_KNOWN").map { String(cString: $0) == "1" } ?? false

/// The known crashes, by the message that causes them:
/// 1. hang: a stable digest far ahead makes `ViewLog.adoptStable` walk every
///    sequence number up to it;
/// 2. trap: a flush report's order entry names an origin rank outside the
///    view (`computeInstall` indexes the cut with it).
func isKnown(_ message: ProtocolMessage, members: Int) -> Bool {
    switch message {
    case .heartbeat(_, _, let digest?), .stable(_, let digest):
        return digest.received.contains { $0 > 1 << 20 }
    case .flushReport(let report):
        return report.orders.contains { Int($0.origin) >= members }
    default:
        return false
    }
}
let stranger = ProcessID(node: NodeID(4000), incarnation: 1)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var cluster = initial
    cluster.trace = []
    var input = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    var steps = 0
    while let control: UInt8 = input.readInteger(), steps < 256 {
        steps += 1
        let target = Int(control & 3) % 3
        let choice = Int(control >> 2 & 3)
        var sender = choice == 3 ? stranger : cluster.nodes[(target + 1 + choice % 2) % 3].me
        if control & 0x20 != 0 { sender = ProcessID(node: sender.node, incarnation: sender.incarnation + 1) }
        guard let message = try? MessageCodec.decode(&input) else { break }
        if suppressKnown && isKnown(message, members: cluster.nodes[target].currentView?.members.count ?? 3) { continue }
        let effects = cluster.nodes[target].onMessage(from: sender, message, now: cluster.now)
        cluster.apply(target, effects)
        if control & 0x40 != 0 { cluster.pump() }
        if control & 0x80 != 0 {
            cluster.tick()
            cluster.pump()
        }
    }
    cluster.pump()
    for node in cluster.nodes {
        check(node.bufferedMessageCount <= 1 << 16, "node holds \(node.bufferedMessageCount) messages")
        check(node.pendingPublishCount <= Cluster.settings.pendingPublishesMax, "node holds \(node.pendingPublishCount) publishes")
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

func seeds() -> [[UInt8]] {
    // The messages the real cluster exchanged after it was stable, as
    // steps addressed to their real receiver from their real sender.
    let trace = initial.trace
    func step(_ entry: (to: Int, from: Int, message: ProtocolMessage), control extra: UInt8 = 0) -> [UInt8] {
        // The sender as the harness names it relative to the receiver.
        let choice = (entry.from - entry.to - 1 + 3) % 3
        var b = ByteBuffer()
        b.writeInteger(UInt8(entry.to) | UInt8(choice) << 2 | extra)
        MessageCodec.encode(entry.message, into: &b)
        return b.bytes
    }
    var out: [[UInt8]] = []
    // Each message alone, then runs of the trace with pumping and ticks.
    var seenKinds = Set<String>()
    for entry in trace {
        let kind = String("\(entry.message)".prefix(while: { $0 != "(" }))
        if seenKinds.insert("\(kind)-\(entry.to)").inserted { out.append(step(entry)) }
    }
    for start in stride(from: 0, to: trace.count, by: 8) {
        out.append(trace[start..<min(start + 8, trace.count)].flatMap { step($0, control: 0x40) })
    }
    out.append(trace.prefix(24).enumerated().flatMap { step($1, control: $0 % 4 == 0 ? 0xC0 : 0) })
    return Array(out.prefix(48))
}

