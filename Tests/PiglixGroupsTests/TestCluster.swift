import PiglixGroups
import PiglixTopics

/// A hand-driven cluster for unit tests: messages wait in one queue until
/// `pump`, links can be cut, nodes can be stopped; time moves only by `tick`.
struct TestCluster {
    var settings: GroupSettings
    var nodes: [NodeID: GroupNode] = [:]
    var queue: [(from: ProcessID, to: NodeID, message: ProtocolMessage)] = []
    var now: Tick = 0
    var stopped: Set<NodeID> = []
    var cutLinks: Set<[UInt64]> = []
    var views: [NodeID: [ClusterView]] = [:]
    var deliveries: [NodeID: [Delivery]] = [:]
    var acks: [NodeID: [(token: UInt64, level: DeliveryLevel)]] = [:]
    var refusals: [NodeID: [PublishRefusal]] = [:]
    var primaryLost: Set<NodeID> = []
    var rejoined: [NodeID: ProcessID] = [:]
    var states: [NodeID: [TopicPattern: [String]]] = [:]
    var sent: [String: Int] = [:]

    init(settings: GroupSettings = TestCluster.defaultSettings) {
        self.settings = settings
    }

    static var defaultSettings: GroupSettings {
        var s = GroupSettings()
        s.heartbeatIntervalTicks = 10
        s.suspicionTimeoutTicks = 50
        s.deliverUnmatched = true
        return s
    }

    static func id(_ n: UInt64) -> NodeID { NodeID(n) }

    /// Starts `count` nodes (node 1 bootstraps) and runs until all share a view.
    static func started(_ count: Int, settings: GroupSettings = TestCluster.defaultSettings) throws -> TestCluster {
        var c = TestCluster(settings: settings)
        let seeds = (1...count).map { NodeID(UInt64($0)) }
        for i in 1...count {
            var node = try GroupNode(settings: settings, me: ProcessID(node: NodeID(UInt64(i)), incarnation: 1))
            let e = node.onStart(seeds: seeds, bootstrap: i == 1, now: 0)
            c.nodes[NodeID(UInt64(i))] = node
            c.apply(NodeID(UInt64(i)), e)
        }
        c.pump()
        c.tickUntil { $0.allInOneView(count) }
        return c
    }

    func allInOneView(_ count: Int) -> Bool {
        let vs = nodes.values.compactMap(\.currentView)
        return vs.count == nodes.count - stopped.count && Set(vs.map(\.id)).count == 1 && vs.first?.members.count == count
    }

    func view(_ n: UInt64) -> ClusterView? { nodes[NodeID(n)]?.currentView }

    mutating func apply(_ n: NodeID, _ effects: [GroupEffect]) {
        let me = nodes[n]!.me
        for e in effects {
            switch e {
            case .send(let to, let m):
                sent[Self.kind(m), default: 0] += 1
                queue.append((me, to, m))
            case .deliver(let d):
                deliveries[n, default: []].append(d)
                for g in d.groups { states[n, default: [:]][g, default: []].append(String(decoding: d.message.payload, as: UTF8.self)) }
            case .installClusterView(let v):
                views[n, default: []].append(v)
            case .publishAcked(let t, _, let l):
                acks[n, default: []].append((t, l))
            case .publishRefused(_, let r):
                refusals[n, default: []].append(r)
            case .primaryLost:
                primaryLost.insert(n)
            case .rejoining(let p):
                rejoined[n] = p
                states[n] = [:]
            case .requestCheckpoint(let req):
                let snapshot = (states[n]?[req.pattern] ?? []).joined(separator: ",")
                let e2 = nodes[n]!.onCheckpointChunk(ticket: req.ticket, state: Array(snapshot.utf8), last: true, now: now)
                apply(n, e2)
            case .applyCheckpointChunk(let chunk):
                // The snapshot above is always one chunk.
                let s = String(decoding: chunk.state, as: UTF8.self)
                states[n, default: [:]][chunk.pattern] = s.isEmpty ? [] : s.split(separator: ",").map(String.init)
                apply(n, nodes[n]!.onCheckpointChunkApplied(chunk, ok: true, now: now))
            default:
                break
            }
        }
    }

    static func kind(_ m: ProtocolMessage) -> String {
        switch m {
        case .data: "data"
        case .order: "order"
        case .ack: "ack"
        case .stable: "stable"
        case .heartbeat: "heartbeat"
        case .flushStart: "flushStart"
        case .propose: "propose"
        case .install: "install"
        default: "other"
        }
    }

    func linkCut(_ a: NodeID, _ b: NodeID) -> Bool { cutLinks.contains([a.rawValue, b.rawValue]) }

    mutating func cut(_ a: UInt64, _ b: UInt64) {
        cutLinks.insert([a, b])
        cutLinks.insert([b, a])
    }
    mutating func cutOneWay(_ a: UInt64, _ b: UInt64) { cutLinks.insert([a, b]) }
    mutating func healAll() { cutLinks = [] }

    /// Delivers queued messages until the queue is empty; `drop` may discard some.
    mutating func pump(drop: ((ProcessID, NodeID, ProtocolMessage) -> Bool)? = nil) {
        var i = 0
        while i < queue.count {
            let (from, to, m) = queue[i]
            i += 1
            if stopped.contains(to) || stopped.contains(from.node) || linkCut(from.node, to) { continue }
            if let drop, drop(from, to, m) { continue }
            guard var node = nodes[to] else { continue }
            let e = node.onMessage(from: from, m, now: now)
            nodes[to] = node
            apply(to, e)
        }
        queue.removeAll()
    }

    mutating func tick(_ times: Int = 1, drop: ((ProcessID, NodeID, ProtocolMessage) -> Bool)? = nil) {
        for _ in 0..<times {
            now += settings.heartbeatIntervalTicks
            for n in nodes.keys.sorted() where !stopped.contains(n) {
                let e = nodes[n]!.onTick(now: now)
                apply(n, e)
            }
            pump(drop: drop)
        }
    }

    mutating func tickUntil(max: Int = 200, _ done: (TestCluster) -> Bool) {
        var k = 0
        while !done(self) && k < max {
            tick()
            k += 1
        }
    }

    mutating func publish(_ n: UInt64, _ text: String, topic: String = "a.b", level: DeliveryLevel = .fifo, token: UInt64 = 0) {
        let req = PublishRequest(token: token, session: 1, destination: .topic(try! Topic(topic)), level: level, payload: Array(text.utf8))
        let e = nodes[NodeID(n)]!.onPublish(req, now: now)
        apply(NodeID(n), e)
    }

    mutating func join(_ n: UInt64, _ pattern: String) {
        let e = nodes[NodeID(n)]!.onJoin(try! TopicPattern(pattern), now: now)
        apply(NodeID(n), e)
    }

    func delivered(_ n: UInt64, in view: ViewID? = nil) -> [String] {
        (deliveries[NodeID(n)] ?? []).filter { view == nil || $0.view == view }.map { String(decoding: $0.message.payload, as: UTF8.self) }
    }
}
