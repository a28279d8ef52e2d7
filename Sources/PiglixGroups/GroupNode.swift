import PiglixTopics

/// The virtual synchrony core of one node: a value type with no I/O, no
/// clock and no randomness (apple/swift-cluster-membership's `SWIM.Instance`,
/// etcd's `RawNode`). Each input is a handler returning the effects the shell
/// must carry out, in order. Not thread-safe; drive it from one loop.
///
/// Technique: Isis/Horus virtual synchrony (Birman & Joseph 1987; Birman,
/// "Reliable Distributed Systems" ch. 16; van Renesse et al., Horus 1996)
/// with a coordinator-driven flush, a fixed sequencer per view for `total`
/// and `safe` (Défago et al. 2004), stability gathered at the coordinator,
/// lightweight groups ordered in the cluster stream (Glade et al. 1993) and
/// the primary-component rule of Isis (Ricciardi & Birman 1991).
/// Deviations are listed in docs/virtual-synchrony.md.
public struct GroupNode: Sendable {
    public let settings: GroupSettings
    /// This process. Its incarnation grows when it is excluded and rejoins.
    public internal(set) var me: ProcessID

    enum Phase: Hashable, Sendable {
        case idle, joining, member, left
    }
    var phase: Phase = .idle
    var seeds: [NodeID] = []
    var now: Tick = 0
    var out: [GroupEffect] = []

    // Membership (Membership.swift, Flush.swift)
    /// The current view's log; meaningful only while `hasLog` (stored
    /// unwrapped: mutating through an optional copied it on the hot path).
    var vlog: ViewLog
    var hasLog = false
    var log: ViewLog? { hasLog ? vlog : nil }
    var lastInstall: Install?
    var suspects: Set<ProcessID> = []
    var joiners: [ProcessID] = []
    var promised: ViewID?
    var epochSeen: UInt64 = 0
    var coordinating: CoordinatorFlush?
    /// Reported to a flush: no sending, no delivering in the current view.
    var flushing = false
    /// The digest at this process's first flush report in the view. While
    /// flushing it claims no more than that to the stability computation:
    /// reports are taken at different times, and a message must not become
    /// stable (and be collected) on the strength of a receipt that no report
    /// shows.
    var frozenDigest: Digest?
    /// Paxos acceptor state for the current view's change.
    var acceptedValue: (ballot: ViewID, install: Install)?
    var blocked = false
    var nextHeartbeatAt: Tick = 0
    var nextJoinAt: Tick = 0
    var noticeSentAt: [NodeID: Tick] = [:]
    var future = Ring<(ProcessID, ProtocolMessage)>()

    // Publishing (Publish.swift)
    var publishSeq: UInt64 = 0
    var pending = Ring<PendingPublish>()
    var pendingBytes = 0
    /// Own messages sent in the current view, not yet delivered here.
    var inflight = Ring<InflightPublish>()

    // Sequencer and stability batching (finished at the end of a handler)
    var newEntriesFirst: UInt64 = 0
    var newEntries: [OrderEntry] = []
    var ackDirty = false
    /// Messages received since this member last acked (`ackEveryMessages`).
    var receivedSinceAck = 0
    var stableDirty = false

    // Groups and state transfer (Groups.swift, StateTransfer.swift)
    var groups = GroupTable()
    var local: [TopicPattern: LocalGroup] = [:]
    var trie: PatternTrie<TopicPattern>
    var wanted: Set<TopicPattern> = []
    /// The last topic matched and its result, valid while the trie's
    /// generation is unchanged: consecutive messages on one topic (the
    /// common case) skip the trie's hashed cache.
    var lastTopic = ""
    var lastGeneration: UInt64 = .max
    var lastMatch: [TopicPattern] = []
    /// Local patterns joining or awaiting a checkpoint.
    var transferring: [TopicPattern] = []
    /// Patterns whose checkpoint cut lies in the current view: live
    /// messages the cut covers are already in the checkpoint.
    var cuts: [TopicPattern: StreamPosition] = [:]
    /// Publishes a checkpoint already contains although the flush cut them
    /// (a provider delivered a `safe` message whose stability no survivor
    /// knew, then was excluded): their re-send in the next view is skipped
    /// for that pattern. Kept for two view changes.
    var skip: [TopicPattern: Set<PublishID>] = [:]
    var skipAge = 0
    var tickets: [UInt64: Ticket] = [:]
    var nextTicket: UInt64 = 0
    var deferred: [(joiner: ProcessID, pattern: TopicPattern, after: StreamPosition)] = []

    var scratch: [DataMessage] = []
    var delivering = false
    var redeliver = false

    public init(settings: GroupSettings = GroupSettings(), me: ProcessID) throws(GroupSettings.Invalid) {
        try settings.validate()
        self.settings = settings
        self.me = me
        self.trie = PatternTrie(cacheCapacity: settings.matchCacheCapacity)
        self.vlog = ViewLog(view: ClusterView(id: ViewID(epoch: 0, coordinator: me), members: [me]), me: me)
    }

    // MARK: Inputs

    /// Start: join the primary view through `seeds`, or, with `bootstrap`,
    /// form the first view alone (only the very first node of a cluster).
    public mutating func onStart(seeds: [NodeID], bootstrap: Bool, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        onStart(seeds: seeds, bootstrap: bootstrap, now: now, into: &e)
        return e
    }
    public mutating func onStart(seeds: [NodeID], bootstrap: Bool, now: Tick, into effects: inout [GroupEffect]) {
        run(now, &effects) { n in n.start(seeds: seeds, bootstrap: bootstrap) }
    }

    public mutating func onMessage(from: ProcessID, _ message: ProtocolMessage, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        onMessage(from: from, message, now: now, into: &e)
        return e
    }
    public mutating func onMessage(from: ProcessID, _ message: ProtocolMessage, now: Tick, into effects: inout [GroupEffect]) {
        run(now, &effects) { n in n.receive(from: from, message) }
    }

    public mutating func onTick(now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        onTick(now: now, into: &e)
        return e
    }
    public mutating func onTick(now: Tick, into effects: inout [GroupEffect]) {
        run(now, &effects) { n in n.tick() }
    }

    public mutating func onPublish(_ request: PublishRequest, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        onPublish(request, now: now, into: &e)
        return e
    }
    public mutating func onPublish(_ request: PublishRequest, now: Tick, into effects: inout [GroupEffect]) {
        run(now, &effects) { n in n.publish(request) }
    }

    /// A node to ask for admission (and to tell about this view when it is
    /// outside it): the shell learns seeds as their connections come up.
    public mutating func addSeed(_ node: NodeID) {
        if node != me.node && !seeds.contains(node) { seeds.append(node) }
    }

    /// A pattern got its first local subscriber: join its group.
    public mutating func onJoin(_ pattern: TopicPattern, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in n.joinGroup(pattern) }
        return e
    }

    /// A pattern lost its last local subscriber: leave its group.
    public mutating func onLeave(_ pattern: TopicPattern, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in n.leaveGroup(pattern) }
        return e
    }

    /// The application's answer to `.requestCheckpoint`.
    public mutating func onCheckpoint(ticket: UInt64, state: [UInt8], now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in n.supplyCheckpoint(ticket: ticket, state: state) }
        return e
    }

    /// Leave the cluster for good. Peers notice the silence and exclude
    /// this process; publishes in flight end as `.publishFailed`.
    public mutating func onLeaveCluster(now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in
            n.failAllPublishes(.leftCluster)
            n.phase = .left
            n.hasLog = false
        }
        return e
    }

    // MARK: Queries (for the shell, tests and the simulator)

    public var currentView: ClusterView? { phase == .member ? log?.view : nil }
    public var isMember: Bool { phase == .member }
    public var isInPrimary: Bool { phase == .member && !blocked }
    public var isFlushing: Bool { flushing }
    /// Whether this process holds message `id` (received, possibly already
    /// garbage-collected): used by the simulator to check P8.
    public func holds(_ id: MessageID) -> Bool { log?.holds(id) ?? false }
    public func groupView(_ pattern: TopicPattern) -> GroupView? {
        guard let log, let members = groups.members(pattern) else { return nil }
        return GroupView(pattern: pattern, clusterView: log.view.id, members: members)
    }
    public var groupCount: Int { groups.count }
    /// Every group of the cluster and its members, as this node derives them.
    public var allGroupViews: [GroupView] {
        guard let log else { return [] }
        return groups.table.values.map { GroupView(pattern: $0.pattern, clusterView: log.view.id, members: $0.members) }
    }
    /// Messages buffered in the current view (unstable or undelivered).
    public var bufferedMessageCount: Int { log.map { $0.streams.reduce(0) { $0 + $1.buffer.count } } ?? 0 }
    public var pendingPublishCount: Int { pending.count }
    public var position: StreamPosition? { log?.position }
    /// The view this process accepted in a flush and has not installed yet:
    /// it may be committed, by this coordinator or a later one (Paxos).
    public var acceptedView: ClusterView? { acceptedValue?.install.view }

    // MARK: Handler frame

    @inline(__always)
    mutating func run(_ now: Tick, _ effects: inout [GroupEffect], _ body: (inout GroupNode) -> Void) {
        if now > self.now { self.now = now }
        swap(&out, &effects)
        body(&self)
        finish()
        swap(&out, &effects)
    }

    /// Sends what the handler batched: new order entries, an eager ack, a
    /// stable digest; serves deferred checkpoint requests.
    mutating func finish() {
        guard phase == .member, hasLog else { return }
        if !newEntries.isEmpty {
            let msg = ProtocolMessage.order(view: vlog.view.id, first: newEntriesFirst, entries: newEntries)
            broadcast(msg)
            newEntries.removeAll(keepingCapacity: true)
        }
        if ackDirty {
            ackDirty = false
            receivedSinceAck = 0
            if !vlog.isSequencer {
                send(vlog.view.coordinator.node, .ack(view: vlog.view.id, digest: claimedDigest))
            } else if !flushing && vlog.recomputeStable() {
                // The sequencer's own receipt can be what stability waited for.
                stableDirty = true
                deliver(hint: nil)
            }
        }
        if stableDirty {
            stableDirty = false
            broadcast(.stable(view: vlog.view.id, digest: vlog.stable))
        }
        if !deferred.isEmpty { serveDeferred() }
    }

    var claimedDigest: Digest { frozenDigest ?? vlog.digest }

    @inline(__always)
    mutating func send(_ to: NodeID, _ m: ProtocolMessage) {
        out.append(.send(to: to, m))
    }

    mutating func broadcast(_ m: ProtocolMessage) {
        guard hasLog else { return }
        for p in vlog.view.members where p != me { out.append(.send(to: p.node, m)) }
    }
}

extension GroupNode: CustomStringConvertible {
    /// The membership state in one line, for logs and failed checks.
    public var description: String {
        var s = "\(me) \(phase) view \(log?.view.description ?? "-")"
        if flushing { s += " flushing promised \(promised.map(\.description) ?? "-")" }
        if let c = coordinating { s += " coordinating \(c.proposal) reports \(c.reports.keys.sorted())" }
        if blocked { s += " blocked" }
        if !suspects.isEmpty { s += " suspects \(suspects.sorted())" }
        if !joiners.isEmpty { s += " joiners \(joiners)" }
        s += " pending \(pending.count) inflight \(inflight.count)"
        return s
    }
}

extension GroupNode {
    /// The stable digest this process knows and its own digest, for
    /// invariant checks in tests and the simulator.
    public var stabilityDebug: (view: ViewID, stable: Digest, held: Digest)? {
        guard phase == .member, let log else { return nil }
        return (log.view.id, log.stable, log.digest)
    }
}
