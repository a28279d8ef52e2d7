import PiglixGroups
import PiglixTopics

public struct SimulationResult: Sendable {
    public var seed: UInt64
    public var trace: [TraceEvent]
    public var final: FinalState
    public var violations: [Violation]
    public var deliveries: Int
    public var messagesSent: Int
}

/// A deterministic discrete-event simulation of a Piglix cluster running
/// the real `GroupNode` core: a simulated clock, per-link latency and jitter,
/// FIFO links (as TCP), loss only on cut links, crashes, restarts as new
/// incarnations, pauses beyond the suspicion timeout, partitions and heals,
/// and a publish/subscribe workload on wildcard groups at all three levels.
public struct Simulator {
    enum Event {
        case message(from: Int, fromProcess: ProcessID, to: Int, ProtocolMessage)
        case tick(node: Int, generation: UInt64)
        /// The application supplies a checkpoint chunk (provider side).
        case checkpointChunk(node: Int, generation: UInt64, ticket: UInt64, state: [UInt8], last: Bool)
        /// The application applied a checkpoint chunk (joiner side).
        case checkpointApplied(node: Int, generation: UInt64, CheckpointChunk)
        case publish(node: Int)
        case subscribe(node: Int)
        case crash(node: Int)
        /// Several nodes at once, whatever the primary-component rule says.
        case majorityCrash(nodes: [Int])
        case restart(node: Int)
        case pause(node: Int, ticks: UInt64)
        case resume(node: Int)
        case partition
        case heal
        /// A client sends an idempotent record (or retries it) to a node.
        case idempotentPublish(node: Int, IdempotentRecord, attempt: Int)
        /// The coordinator of the newest view crashes (restarting later).
        case crashCoordinator(restartAfter: UInt64)
        /// A client requests a lock at a node (Locks.swift).
        case lockRequest(node: Int, lock: String)
        /// A holder's client releases (closes its stream, or DELETE by token).
        case lockRelease(node: Int, generation: UInt64, id: UInt64, byToken: Bool)
        /// A node's periodic lock-lease check.
        case lockLease(node: Int)
        /// The lock-delay after an excluded holder ended: a grant held back
        /// from its client reaches it (Locks.swift).
        case lockReveal(node: Int, generation: UInt64, id: UInt64)
        /// Work queues (Queues.swift): a member joins, leaves, acks.
        case queueJoin(node: Int, queue: Int)
        case queueLeave(node: Int)
        case queueAck(node: Int, generation: UInt64, queue: Int, local: UInt64, key: QueueMessageKey)
    }

    enum Status { case up, paused, down }

    struct SimNode {
        var core: GroupNode
        var status: Status = .up
        /// Paused past the suspicion timeout: the others will exclude it and
        /// it comes back as a new incarnation with empty tables, so until
        /// then it does not count as a holder of a replicated table
        /// (`holdsLastTable`).
        var lapsed = false
        /// Bumped at every crash/restart, so stale timers and answers are dropped.
        var generation: UInt64 = 0
        var timerAt: UInt64 = .max
        var view: ClusterView?
        var backlog: [Event] = []
        var states: [TopicPattern: Set<UInt64>] = [:]
        /// Checkpoints being supplied in chunks: the encoded state and how
        /// much of it was handed out.
        var readers: [UInt64: (state: [UInt8], offset: Int)] = [:]
        /// What survives a crash: the core's acceptor state.
        var disk: AcceptorState?
        /// Checkpoints being applied: the chunks so far, per pattern.
        var assembling: [TopicPattern: (request: UInt64, state: [UInt8])] = [:]
        var subscribed: Set<TopicPattern> = []
        var sessions: UInt64 = 0
        /// The application's idempotence table (a process's memory: a
        /// restart starts empty; a rejoin keeps it until the checkpoint).
        var table = IdempotenceTable<SimOriginal>()
        /// The `$piglix.idempotence` transfer completed for this incarnation.
        var tableReady = false
        /// This node's idempotent publishes, by number: their delivery's decision.
        var idempotentAcks: [UInt64: IdempotenceDecision<SimOriginal>] = [:]
        /// The application's lock table and client streams (Locks.swift).
        var locks = SimLocks()
        /// The application's work queue table (Queues.swift), whether its
        /// transfer completed, what arrived meanwhile, and the local
        /// members (local id → queue).
        var qtable = QueueTable<UInt64>(limits: QueueModel.limits)
        var qReady = false
        var qBuffer: [SimQueueEvent] = []
        var qMembers: [UInt64: Int] = [:]
        /// The skip list of the queue checkpoint being applied.
        var qSkip: Set<PublishID> = []
        /// While a queue checkpoint's buffer is replayed: the view of the
        /// event being replayed.
        var qReplayView: ViewID?
        var qNextLocal: UInt64 = 0
    }

    public let config: SimulationConfig
    var rng: SimRandom
    var queue = EventQueue<Event>()
    var now: UInt64 = 0
    var nodes: [SimNode] = []
    var linkLast: [[UInt64]]
    var side: [Int]
    var trace: [TraceEvent] = []
    var nextNumber: UInt64 = 0
    var maxIncarnation: [UInt64]
    var effects: [GroupEffect] = []
    var probes: [UInt64: Set<ProcessID>] = [:]
    var probing = false
    var deliveries = 0
    var messagesSent = 0
    public var recordTrace = true
    /// Counts of `send` effects per message kind (for the scale table).
    public var sentByKind: [String: Int] = [:]
    public var debugInvariants = false
    var flushStartedAt: UInt64?
    var lastInstallAt: UInt64?
    var idem: IdempotenceModel
    var qmodel: QueueModel
    var idempotenceTickets: Set<UInt64> = []
    var lockModel: LockModel

    static let patterns: [TopicPattern] = ["s.*.t", "s.>", "s.a.t", "x.>", "s.b.*", "s.*.*"].map { try! TopicPattern($0) }
    static let topics: [Topic] = ["s.a.t", "s.b.t", "s.b.u", "x.y", "s.c.t", "x.y.z"].map { try! Topic($0) }
    static let probeTopic = try! Topic("probe.all")

    public init(config: SimulationConfig) {
        var config = config
        if config.faults.contains(.retry) {
            // As the broker: no group goes active before the idempotence
            // table is complete (ClusterSettings.groupSettings).
            config.settings.prerequisiteGroup = Self.idempotencePattern
        }
        // As the broker: the queue and lock tables depend on the order of
        // deliveries.
        if config.faults.contains(.queue) { config.settings.orderedStateGroups.insert(QueueModel.pattern) }
        if config.faults.contains(.locks) { config.settings.orderedStateGroups.insert(Self.locksPattern) }
        self.config = config
        self.rng = SimRandom(seed: config.seed)
        let n = config.nodes
        self.linkLast = Array(repeating: Array(repeating: 0, count: n), count: n)
        self.side = Array(repeating: 0, count: n)
        self.maxIncarnation = Array(repeating: 1, count: n)
        self.idem = IdempotenceModel(seed: config.seed, nodes: n)
        self.lockModel = LockModel(seed: config.seed)
        self.qmodel = QueueModel(seed: config.seed)
        for i in 0..<n {
            let core = try! GroupNode(settings: config.settings, me: ProcessID(node: NodeID(UInt64(i + 1)), incarnation: 1))
            nodes.append(SimNode(core: core, table: IdempotenceTable(limits: config.idempotence)))
        }
    }

    public static func run(_ config: SimulationConfig) -> SimulationResult {
        var sim = Simulator(config: config)
        return sim.run()
    }

    public mutating func run() -> SimulationResult {
        let n = config.nodes
        for i in 0..<n {
            let startAt = i == 0 ? 0 : UInt64(rng.int(0...200))
            queue.push(startAt, .restart(node: i))
            nodes[i].status = .down
            for _ in 0..<rng.int(1...3) { queue.push(startAt + UInt64(rng.int(0...400)), .subscribe(node: i)) }
        }
        // Workload.
        let end = config.durationTicks
        for i in 0..<n {
            for _ in 0..<config.publishesPerNode { queue.push(UInt64(rng.int(250...Int(end))), .publish(node: i)) }
        }
        // Faults.
        // (A corrupt chunk is not scheduled: it strikes as chunks are applied.
        // A majority crash draws from its own stream, so the other faults of
        // a seed stay what they were.)
        let kinds = config.faults.faults.filter { $0 != .corruptChunk && $0 != .majorityCrash && $0 != .retry && $0 != .locks && $0 != .queue }
        if config.faults.contains(.majorityCrash) {
            var own = SimRandom(seed: config.seed ^ 0x6D61_6A6F_7269_7479)
            if own.chance(0.5) {
                let at = UInt64(own.int(400...Int(config.durationTicks - 600)))
                let victims = Array((0..<n).shuffled(using: &own).prefix(n / 2 + 1))
                queue.push(at, .majorityCrash(nodes: victims))
                for i in victims { queue.push(at + UInt64(own.int(1...150)), .restart(node: i)) }
            }
        }
        if !kinds.isEmpty {
            for _ in 0..<rng.int(config.faultCount) {
                let at = UInt64(rng.int(400...Int(end - 300)))
                let node = rng.int(0...(n - 1))
                switch kinds[rng.int(0...(kinds.count - 1))] {
                case .crash:
                    queue.push(at, .crash(node: node))
                    queue.push(at + UInt64(rng.int(40...400)), .restart(node: node))
                case .pause:
                    queue.push(at, .pause(node: node, ticks: UInt64(rng.int(20...250))))
                case .partition:
                    queue.push(at, .partition)
                    queue.push(at + UInt64(rng.int(50...400)), .heal)
                case .churn:
                    // A crash and an immediate restart: the rejoin lands in
                    // the view change the crash causes.
                    queue.push(at, .crash(node: node))
                    queue.push(at + UInt64(rng.int(1...30)), .restart(node: node))
                    queue.push(at + UInt64(rng.int(0...40)), .subscribe(node: rng.int(0...(n - 1))))
                case .corruptChunk, .majorityCrash, .retry, .locks, .queue:
                    break
                }
            }
        }
        scheduleIdempotentWorkload()
        scheduleLockWorkload()
        scheduleQueueWorkload()
        runUntil(end)
        // Faults stop: heal, resume, restart; then a quiet phase (P9).
        heal()
        for i in 0..<n {
            switch nodes[i].status {
            case .paused: resume(i)
            case .down: restart(i)
            case .up: break
            }
        }
        let quiet = config.settings.suspicionTimeoutTicks * 15
        runUntil(now + quiet)
        probing = true
        for i in 0..<n where nodes[i].core.isInPrimary {
            for level in DeliveryLevel.allCases { publish(i, destination: .topic(Self.probeTopic), level: level) }
        }
        runUntil(now + quiet)
        if queuesOn {
            drainQueues()
            runUntil(now + quiet)
        }
        var final = FinalState()
        for node in nodes where node.status == .up {
            final.views[node.core.me] = node.core.currentView
            var states: [String: Set<UInt64>] = [:]
            for (p, s) in node.states { states[p.name] = s }
            final.states[node.core.me] = states
        }
        for i in nodes.indices where nodes[i].status == .up && nodes[i].tableReady && retries {
            final.idempotenceTables[nodes[i].core.me] = tableContents(i)
        }
        for i in nodes.indices where nodes[i].status == .up && nodes[i].locks.ready && locksOn {
            final.lockTables[nodes[i].core.me] = lockContents(i)
        }
        for i in nodes.indices where nodes[i].status == .up && nodes[i].qReady && queuesOn {
            final.queueLeftovers[nodes[i].core.me] = queueLeftovers(i)
        }
        final.probes = probes
        let violations = Checker().check(trace, final: final)
        if !violations.isEmpty {
            for node in nodes { record(.fault(at: now, "end state \(node.status) \(node.core)")) }
        }
        return SimulationResult(seed: config.seed, trace: trace, final: final, violations: violations, deliveries: deliveries, messagesSent: messagesSent)
    }

    mutating func runUntil(_ t: UInt64) {
        while let next = queue.nextTime, next <= t {
            let (time, event) = queue.pop()!
            now = time
            dispatch(event)
            if debugInvariants { checkStability(event) }
        }
        now = max(now, t)
    }

    mutating func record(_ e: TraceEvent) {
        if recordTrace { trace.append(e) }
    }

    mutating func dispatch(_ event: Event) {
        switch event {
        case .message(let from, let fromProcess, let to, let msg):
            guard side[from] == side[to] else { return }
            switch nodes[to].status {
            case .down: return
            case .paused: nodes[to].backlog.append(event)
            case .up:
                let t = now
                var buf: [GroupEffect] = []
                swap(&buf, &effects)
                nodes[to].core.onMessage(from: fromProcess, msg, now: t, into: &buf)
                effects = buf
                apply(to)
            }
        case .tick(let i, let generation):
            guard nodes[i].generation == generation else { return }
            switch nodes[i].status {
            case .down: return
            case .paused: nodes[i].backlog.append(event)
            case .up:
                guard nodes[i].timerAt == now else { return }
                nodes[i].timerAt = .max
                let t = now
                var buf: [GroupEffect] = []
                swap(&buf, &effects)
                nodes[i].core.onTick(now: t, into: &buf)
                effects = buf
                apply(i)
            }
        case .checkpointChunk(let i, let generation, let ticket, let state, let last):
            guard nodes[i].generation == generation else { return }
            switch nodes[i].status {
            case .down: return
            case .paused: nodes[i].backlog.append(event)
            case .up:
                effects = nodes[i].core.onCheckpointChunk(ticket: ticket, state: state, last: last, now: now)
                apply(i)
            }
        case .checkpointApplied(let i, let generation, let chunk):
            guard nodes[i].generation == generation else { return }
            switch nodes[i].status {
            case .down: return
            case .paused: nodes[i].backlog.append(event)
            case .up:
                let ok = !(config.faults.contains(.corruptChunk) && rng.chance(0.05))
                if ok, chunk.last, nodes[i].core.awaitsApplied(chunk), let assembled = nodes[i].assembling.removeValue(forKey: chunk.pattern),
                    assembled.request == chunk.request
                {
                    if chunk.pattern == Self.idempotencePattern {
                        applyIdempotenceCheckpoint(i, state: assembled.state, cut: chunk.cut)
                    } else if chunk.pattern == Self.locksPattern {
                        applyLockCheckpoint(i, state: assembled.state)
                    } else if chunk.pattern == QueueModel.pattern {
                        applyQueueCheckpoint(i, state: assembled.state, cut: chunk.cut)
                    } else {
                        let set = Self.decode(assembled.state)
                        nodes[i].states[chunk.pattern] = set
                        record(.checkpoint(at: now, process: nodes[i].core.me, pattern: chunk.pattern.name, numbers: set.sorted()))
                    }
                }
                if !ok { record(.fault(at: now, "corrupt checkpoint chunk \(chunk.index) of \(chunk.pattern.name) at \(nodes[i].core.me)")) }
                effects = nodes[i].core.onCheckpointChunkApplied(chunk, ok: ok, now: now)
                apply(i)
            }
        case .publish(let i):
            guard nodes[i].status == .up, nodes[i].core.isInPrimary else { return }
            let topic = Self.topics[rng.int(0...(Self.topics.count - 1))]
            let dest: Destination = rng.chance(0.15) ? .group(Self.patterns[rng.int(0...(Self.patterns.count - 1))]) : .topic(topic)
            let level = DeliveryLevel.allCases[rng.int(0...2)]
            publish(i, destination: dest, level: level)
        case .subscribe(let i):
            guard nodes[i].status == .up else { return }
            let p = Self.patterns[rng.int(0...(Self.patterns.count - 1))]
            if nodes[i].subscribed.contains(p) {
                if config.faults.contains(.churn) && rng.chance(0.5) {
                    nodes[i].subscribed.remove(p)
                    nodes[i].states[p] = nil
                    record(.groupLeft(at: now, process: nodes[i].core.me, pattern: p.name))
                    effects = nodes[i].core.onLeave(p, now: now)
                    apply(i)
                }
            } else {
                nodes[i].subscribed.insert(p)
                effects = nodes[i].core.onJoin(p, now: now)
                apply(i)
            }
        case .crash(let i):
            guard nodes[i].status != .down, crashAllowed(i) else { return }
            record(.fault(at: now, "crash \(nodes[i].core.me)"))
            nodes[i].status = .down
            nodes[i].generation += 1
            nodes[i].backlog = []
            retryAfterCrash(i)
        case .majorityCrash(let chosen):
            // One member of the newest view (installed or accepted) lives
            // on to coordinate: when a whole view dies, its members' disks
            // say it existed and a minority of an older view must not
            // replace it (they wait, as after a whole-cluster crash).
            // (A whole view that dies leaves only joiners, which wait for an
            // operator or bootstrap as after a whole-cluster crash; the
            // simulator does not bootstrap restarted nodes.)
            var installed: ClusterView?
            var accepted: ClusterView?
            for node in nodes where node.status != .down {
                if let v = node.view, installed == nil || v.id > installed!.id { installed = v }
                if let v = node.core.acceptedView, accepted == nil || v.id > accepted!.id { accepted = v }
            }
            var victims = chosen
            let live = nodes.indices.filter { nodes[$0].status != .down && installed?.contains(nodes[$0].core.me) == true }
            if let keep = live.first(where: { accepted?.contains(nodes[$0].core.me) ?? true }) ?? live.first {
                victims.removeAll { $0 == keep }
            }
            // And the last holder of the idempotence table on each side
            // (`holdsLastTable`): sparing one on one side only let a crash
            // kill every holder on the side that went on (seed 141526: the
            // holder on the smaller side of a partition was spared, both on
            // the larger side crashed, and their stand-ins started the table
            // empty).
            for v in victims where holdsLastTable(v, sparing: victims) { victims.removeAll { $0 == v } }
            record(.fault(at: now, "crash \(victims.map { nodes[$0].core.me }) together"))
            for i in victims where nodes[i].status != .down {
                nodes[i].status = .down
                nodes[i].generation += 1
                nodes[i].backlog = []
                retryAfterCrash(i)
            }
        case .restart(let i):
            guard nodes[i].status == .down else { return }
            restart(i)
        case .pause(let i, let ticks):
            // A pause past the suspicion timeout excludes the node: the last
            // holder of the table is spared it, as it is a crash.
            guard nodes[i].status == .up, !holdsLastTable(i) else { return }
            record(.fault(at: now, "pause \(nodes[i].core.me) for \(ticks)"))
            nodes[i].status = .paused
            nodes[i].lapsed = true
            queue.push(now + ticks, .resume(node: i))
        case .resume(let i):
            guard nodes[i].status == .paused else { return }
            resume(i)
        case .partition:
            let n = config.nodes
            var s = (0..<n).map { _ in rng.int(0...1) }
            if Set(s).count == 1 { s[rng.int(0...(n - 1))] ^= 1 }
            if retries || locksOn || queuesOn { spareTableHolders(&s) }
            side = s
            record(.fault(at: now, "partition \(s)"))
        case .heal:
            heal()
        case .idempotentPublish(let i, let r, let attempt):
            idempotentPublish(i, r, attempt: attempt)
        case .lockRequest(let i, let lock):
            lockRequest(i, lock: lock)
        case .lockRelease(let i, let generation, let id, let byToken):
            lockRelease(i, generation: generation, id: id, byToken: byToken)
        case .lockLease(let i):
            lockLease(i)
        case .lockReveal(let i, let generation, let id):
            lockReveal(i, generation: generation, id: id)
        case .queueJoin(let i, let q):
            queueJoin(i, queue: q)
        case .queueLeave(let i):
            queueLeave(i)
        case .queueAck(let i, let generation, let q, let local, let key):
            queueAck(i, generation: generation, queue: q, local: local, key: key)
        case .crashCoordinator(let after):
            guard let i = coordinatorNode, nodes[i].status != .down, crashAllowed(i) else { return }
            record(.fault(at: now, "crash coordinator \(nodes[i].core.me)"))
            nodes[i].status = .down
            nodes[i].generation += 1
            nodes[i].backlog = []
            retryAfterCrash(i)
            queue.push(now + after, .restart(node: i))
        }
    }

    mutating func heal() {
        if side.contains(where: { $0 != 0 }) { record(.fault(at: now, "heal")) }
        side = Array(repeating: 0, count: config.nodes)
    }

    mutating func resume(_ i: Int) {
        record(.fault(at: now, "resume \(nodes[i].core.me)"))
        nodes[i].status = .up
        // The lease first: the backlog would make old news look fresh.
        if locksOn, !leaseHeld(i) { endLocalLocks(i, reason: "lease (after a pause)", orphan: true) }
        let backlog = nodes[i].backlog
        nodes[i].backlog = []
        for e in backlog { dispatch(e) }
        if nodes[i].timerAt <= now || nodes[i].timerAt == .max {
            nodes[i].timerAt = now
            queue.push(now, .tick(node: i, generation: nodes[i].generation))
        }
    }

    /// Crashes are permanent losses for the primary-component rule, so the
    /// simulator keeps a majority of the newest view alive (a real cluster
    /// that loses its majority needs an operator). A view accepted in a flush
    /// and not installed yet counts too: a later coordinator must commit it
    /// unchanged (seed 2008: its coordinator crashed, the survivors of the
    /// partition committed it after the heal, and a second crash had left
    /// it without a live majority). Pauses and partitions are not restricted.
    /// The newest installed view must keep its majority as well, for the
    /// flush that installs the accepted one needs it (seed 1551).
    func crashAllowed(_ i: Int) -> Bool {
        if holdsLastTable(i) { return false }
        var installed: ClusterView?
        var accepted: ClusterView?
        for node in nodes where node.status != .down {
            if let v = node.view, installed == nil || v.id > installed!.id { installed = v }
            if let v = node.core.acceptedView, accepted == nil || v.id > accepted!.id { accepted = v }
        }
        for case let v? in [installed, accepted] {
            let alive = v.members.filter { m in
                nodes.enumerated().contains { $0.offset != i && $0.element.status != .down && $0.element.core.me == m }
            }
            if alive.count * 2 <= v.members.count + 1 { return false }
        }
        return true
    }

    mutating func restart(_ i: Int) {
        let first = maxIncarnation[i] == 1 && i == 0 && nodes[i].generation == 0 && trace.isEmpty
        let inc = first ? 1 : maxIncarnation[i] + 1
        maxIncarnation[i] = inc
        nodes[i].core = try! GroupNode(
            settings: config.settings, me: ProcessID(node: NodeID(UInt64(i + 1)), incarnation: inc), restoring: nodes[i].disk)
        nodes[i].status = .up
        nodes[i].lapsed = false
        nodes[i].generation += 1
        nodes[i].view = nil
        nodes[i].states = [:]
        nodes[i].readers = [:]
        nodes[i].assembling = [:]
        nodes[i].backlog = []
        nodes[i].timerAt = .max
        nodes[i].table = IdempotenceTable(limits: config.idempotence)
        nodes[i].tableReady = false
        nodes[i].idempotentAcks = [:]
        nodes[i].locks = SimLocks()
        resetQueues(i)
        if !first { record(.fault(at: now, "restart \(nodes[i].core.me)")) }
        let seeds = (1...config.nodes).map { NodeID(UInt64($0)) }
        effects = nodes[i].core.onStart(seeds: seeds, bootstrap: first, now: now)
        apply(i)
        if retries {
            // Every node is a member of the idempotence group while it runs.
            effects = nodes[i].core.onJoin(Self.idempotencePattern, now: now)
            apply(i)
        }
        if locksOn {
            // And of the lock group.
            effects = nodes[i].core.onJoin(Self.locksPattern, now: now)
            apply(i)
        }
        if queuesOn {
            // And of the work queue group (Queues.swift).
            effects = nodes[i].core.onJoin(QueueModel.pattern, now: now)
            apply(i)
        }
        for p in nodes[i].subscribed.sorted(by: { $0.name < $1.name }) {
            effects = nodes[i].core.onJoin(p, now: now)
            apply(i)
        }
    }

    mutating func publish(_ i: Int, destination: Destination, level: DeliveryLevel) {
        nextNumber += 1
        let number = nextNumber
        let session = UInt64(rng.int(0...1))
        record(.publish(at: now, process: nodes[i].core.me, session: session, number: number, level: level, destination: destination.description))
        if probing { probes[number] = [] }
        submit(i, number: number, session: session, destination: destination, level: level)
    }

    /// Hands publish `number` to node `i`'s core (its payload is the
    /// number, which the checker reads back): the workload's publishes and
    /// the idempotent ones.
    mutating func submit(_ i: Int, number: UInt64, session: UInt64, destination: Destination, level: DeliveryLevel) {
        var payload = [UInt8](repeating: 0, count: 8)
        for b in 0..<8 { payload[b] = UInt8(truncatingIfNeeded: number >> (8 * UInt64(b))) }
        let req = PublishRequest(token: number, session: session, destination: destination, level: level, payload: payload)
        var buf: [GroupEffect] = []
        swap(&buf, &effects)
        nodes[i].core.onPublish(req, now: now, into: &buf)
        effects = buf
        apply(i)
    }

    static func number(_ payload: [UInt8]) -> UInt64 {
        var n: UInt64 = 0
        for b in 0..<min(8, payload.count) { n |= UInt64(payload[b]) << (8 * UInt64(b)) }
        return n
    }

    /// Interprets the effects of node `i`, in order (the shell's duties).
    mutating func apply(_ i: Int) {
        var batch: [GroupEffect] = []
        swap(&batch, &effects)
        let me = nodes[i].core.me
        for effect in batch {
            switch effect {
            case .send(let to, let msg):
                let j = Int(to.rawValue) - 1
                guard j >= 0, j < config.nodes, j != i else { continue }
                messagesSent += 1
                if !recordTrace {
                    sentByKind[Self.kind(msg), default: 0] += 1
                    if case .flushStart = msg, flushStartedAt == nil { flushStartedAt = now }
                }
                guard side[i] == side[j] else { continue }
                let latency = UInt64(rng.int(config.latencyTicks) + rng.int(config.jitterTicks))
                let at = max(now + latency, linkLast[i][j])
                linkLast[i][j] = at
                queue.push(at, .message(from: i, fromProcess: me, to: j, msg))
            case .deliver(let d):
                deliveries += 1
                guard case .publish = d.message.kind else { continue }
                let n = Self.number(d.message.payload)
                record(.deliver(at: now, process: me, view: nodes[i].view?.id, id: d.message.id, publish: d.message.publish, session: d.message.session, number: n, level: d.message.level, groups: d.groups.map(\.name), afterCheckpoint: d.afterCheckpoint))
                if case .publish(.topic(let topic)) = d.message.kind, topic == Self.locksTopic {
                    // A lock operation: the table is its state (not P10's sets).
                    deliverLock(i, d)
                } else {
                    let decided = decideIdempotent(i, d, number: n)
                    if decided {
                        for g in d.groups where g != QueueModel.pattern { nodes[i].states[g, default: []].insert(n) }
                    }
                    queueDelivery(i, d, number: n, decided: decided)
                }
                if probes[n] != nil && !d.afterCheckpoint { probes[n]!.insert(me) }
                if d.message.level.needsStability && !d.afterCheckpoint { safeCheck(i, d.message.id) }
            case .installClusterView(let v):
                nodes[i].view = v
                lastInstallAt = now
                record(.install(at: now, process: me, view: v))
                queueViewInstalled(i, v)
            case .installGroupView(let gv):
                record(.groupView(at: now, process: me, pattern: gv.pattern.name, id: gv.id, members: gv.members))
                if gv.pattern == Self.locksPattern { lockGroupView(i, gv) }
            case .primaryLost:
                if locksOn { endLocalLocks(i, reason: "primary lost", orphan: true) }
            case .rejoining(let new):
                record(.rejoined(at: now, old: me, new: new))
                nodes[i].lapsed = false
                // As the broker (`clusterRejoining`): the old incarnation's
                // table may hold what the primary never delivered; the new
                // one admits from empty until its transfer merges.
                nodes[i].table = IdempotenceTable(limits: config.idempotence)
                nodes[i].states = [:]
                nodes[i].readers = [:]
                nodes[i].assembling = [:]
                nodes[i].view = nil
                nodes[i].tableReady = false
                // As `clusterRejoining`: the old incarnation's streams end;
                // the new one takes the table by transfer.
                endLocalLocks(i, reason: "rejoining", orphan: false)
                nodes[i].locks = SimLocks()
                resetQueues(i)
                maxIncarnation[i] = max(maxIncarnation[i], new.incarnation)
            case .requestCheckpoint(let req):
                idempotenceTickets.insert(req.ticket)
                let state =
                    req.pattern == Self.idempotencePattern
                    ? Self.encodeTable(nodes[i].table.snapshot())
                    : req.pattern == Self.locksPattern
                        ? nodes[i].locks.table.encoded()
                        : req.pattern == QueueModel.pattern
                            ? Self.encodeQueues(nodes[i].qtable.snapshot()) : Self.encode(nodes[i].states[req.pattern] ?? [])
                nodes[i].readers[req.ticket] = (state, 0)
                supplyChunk(i, ticket: req.ticket)
            case .requestCheckpointChunk(let ticket):
                supplyChunk(i, ticket: ticket)
            case .releaseCheckpoint(let ticket):
                nodes[i].readers[ticket] = nil
            case .forgetDeliveries(let p, let ids):
                record(.fault(at: now, "\(me) forgets \(ids.count) records of \(p.name): a flush cut them and excluded their origin"))
                let phantom = Set(ids)
                if p == Self.idempotencePattern { nodes[i].table.forget { phantom.contains($0.id) } }
            case .transferRestarted(let p):
                record(.fault(at: now, "\(me) takes \(p.name) again: a flush cut a message its checkpoint held"))
                if p == QueueModel.pattern { restartQueueTransfer(i) }
                if p == Self.locksPattern { restartLockTransfer(i) }
            case .applyCheckpointChunk(let chunk):
                // Chunks are whole only together (a state split at random
                // byte counts): the state is set when the last is applied.
                if chunk.isFirst { nodes[i].assembling[chunk.pattern] = (chunk.request, []) }
                if chunk.isFirst, chunk.pattern == QueueModel.pattern { nodes[i].qSkip = Set(chunk.skip) }
                if nodes[i].assembling[chunk.pattern]?.request == chunk.request {
                    nodes[i].assembling[chunk.pattern]!.state.append(contentsOf: chunk.state)
                }
                queue.push(now + UInt64(rng.int(0...3)), .checkpointApplied(node: i, generation: nodes[i].generation, chunk))
            case .publishAcked(let token, let id, let level):
                record(.ack(at: now, process: me, number: token, level: level))
                idempotentAcked(i, number: token)
                if level.needsStability, let view = nodes[i].core.currentView {
                    _ = id
                    // The ack follows the local delivery of the same message.
                    _ = view
                }
            case .publishRefused, .publishFailed:
                break
            case .persistAcceptor(let state):
                nodes[i].disk = state
            case .rejectedMessage(let from, let reason):
                // Correct peers never send one: a rejection is a finding.
                record(.fault(at: now, "\(me) rejected a message from \(from): \(reason.rawValue)"))
            case .setTimer(let at):
                if at < nodes[i].timerAt {
                    nodes[i].timerAt = at
                    queue.push(at, .tick(node: i, generation: nodes[i].generation))
                }
            }
        }
        batch.removeAll(keepingCapacity: true)
        if effects.isEmpty { swap(&batch, &effects) }
    }

    mutating func checkStability(_ event: Event) {
        for a in nodes where a.status != .down {
            guard let sa = a.core.stabilityDebug else { continue }
            for b in nodes where b.status != .down {
                guard let sb = b.core.stabilityDebug, sb.view == sa.view else { continue }
                for r in sa.stable.received.indices where sa.stable.received[r] > sb.held.received[r] {
                    fatalError("t=\(now) \(a.core.me) knows stable \(sa.stable.received) but \(b.core.me) holds \(sb.held.received) after \(event)")
                }
            }
        }
    }

    /// P8: at a safe delivery, every member of the view still in it holds it.
    mutating func safeCheck(_ i: Int, _ id: MessageID) {
        guard recordTrace, let view = nodes[i].view, view.id == id.view else { return }
        var missing: [ProcessID] = []
        for m in view.members {
            guard let j = nodes.firstIndex(where: { $0.core.me == m }), nodes[j].status != .down else { continue }
            if nodes[j].core.currentView?.id == view.id && !nodes[j].core.holds(id) { missing.append(m) }
        }
        record(.safeCheck(at: now, process: nodes[i].core.me, id: id, missing: missing))
    }

    /// Hands out the next chunk of a checkpoint, of a random size (some
    /// checkpoints are one chunk, most several), a few ticks later.
    mutating func supplyChunk(_ i: Int, ticket: UInt64) {
        guard let (state, offset) = nodes[i].readers[ticket] else { return }
        // The idempotence table in larger chunks: the broker packs about
        // `--checkpoint-chunk-bytes` (64 KiB) of 29-byte entries in one.
        let end = min(state.count, offset + (idempotenceTickets.contains(ticket) ? 64 : 8) * rng.int(1...6))
        let last = end == state.count
        nodes[i].readers[ticket] = last ? nil : (state, end)
        queue.push(
            now + UInt64(rng.int(0...5)),
            .checkpointChunk(node: i, generation: nodes[i].generation, ticket: ticket, state: Array(state[offset..<end]), last: last))
    }

    static func encode(_ s: Set<UInt64>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count * 8)
        for n in s.sorted() { for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(b)))) } }
        return out
    }
    static func decode(_ bytes: [UInt8]) -> Set<UInt64> {
        var s: Set<UInt64> = []
        var i = 0
        while i + 8 <= bytes.count {
            s.insert(number(Array(bytes[i..<(i + 8)])))
            i += 8
        }
        return s
    }

    static func kind(_ m: ProtocolMessage) -> String {
        switch m {
        case .data: "data"
        case .order: "order"
        case .ack: "ack"
        case .stable: "stable"
        case .heartbeat: "heartbeat"
        case .nak, .orderNak: "nak"
        case .joinRequest: "join"
        case .flushStart, .flushReject, .flushReport, .propose, .accepted, .install, .installRequest, .viewNotice, .standInPromise: "viewchange"
        case .checkpointRequest, .checkpointChunk, .checkpointAck: "transfer"
        }
    }
}
