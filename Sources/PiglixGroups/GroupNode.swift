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

    /// What this process is doing, carrying the state of that phase
    /// (NodeState.swift: what survives what, and why).
    var phase: Phase = .idle
    /// The current view's log: meaningful only while `phase` is `.member`
    /// (NodeState.swift: why it is not in `Member`). Written only by
    /// `installView`, with the new `Member`.
    var vlog: ViewLog
    /// What `rejoin()` replaces. Every other stored property except
    /// `vlog` lives as long as the process.
    var incarnation: Incarnation
    var seeds: [NodeID] = []
    var now: Tick = 0
    var out: [GroupEffect] = []

    // Membership (Membership.swift, Flush.swift)
    var epochSeen: UInt64 = 0
    /// Join retries while joining; view notices to outside seeds while a member.
    var nextJoinAt: Tick = 0
    var noticeSentAt: [NodeID: Tick] = [:]
    /// Messages received since this member last acked (`ackEveryMessages`).
    /// Not reset at a view change or rejoin, as before the state was
    /// regrouped: it only paces eager acks, and resetting it would change
    /// the simulated traces the regression seeds replay.
    var receivedSinceAck = 0

    // Publishing (Publish.swift)
    var publishSeq: UInt64 = 0
    var pending = Ring<PendingPublish>()
    var pendingBytes = 0
    /// Own messages sent in the current view, not yet delivered here.
    var inflight = Ring<InflightPublish>()

    // Groups (Groups.swift, StateTransfer.swift)
    /// The patterns the application subscribes to.
    var wanted: Set<TopicPattern> = []
    var nextTicket: UInt64 = 0
    /// What this node's disk holds of its flush votes (StandIn.swift).
    var acceptor: AcceptorState?
    /// View changes since `incarnation.skip` was last emptied (kept as it
    /// always was: not reset by a rejoin).
    var skipAge = 0

    // Delivery (reentrancy guard and its reusable buffer)
    var scratch: [DataMessage] = []
    var delivering = false
    var redeliver = false

    public init(settings: GroupSettings = GroupSettings(), me: ProcessID, restoring acceptor: AcceptorState? = nil) throws(GroupSettings.Invalid) {
        try settings.validate()
        self.settings = settings
        self.me = me
        self.acceptor = acceptor
        self.incarnation = Incarnation(settings: settings)
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

    /// The application's answer to `.requestCheckpoint` and
    /// `.requestCheckpointChunk`: the ticket's next chunk, and whether it is
    /// the last.
    public mutating func onCheckpointChunk(ticket: UInt64, state: [UInt8], last: Bool, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in n.supplyCheckpointChunk(ticket: ticket, state: state, last: last) }
        return e
    }

    /// Whether the current transfer of the chunk's pattern waits for this
    /// chunk to be applied (a simulator checks what it records). Not while
    /// reported to a flush: the answer would be ignored (seed 2021037), and
    /// the install asks for the state again.
    public func awaitsApplied(_ chunk: CheckpointChunk) -> Bool {
        guard case .awaiting(let t) = incarnation.local[chunk.pattern], !flushing else { return false }
        return t.request == chunk.request && t.applied == chunk.index
    }

    /// The application's answer to `.applyCheckpointChunk`.
    public mutating func onCheckpointChunkApplied(_ chunk: CheckpointChunk, ok: Bool, now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in n.checkpointChunkApplied(chunk.pattern, request: chunk.request, index: chunk.index, ok: ok) }
        return e
    }

    /// Leave the cluster for good. Peers notice the silence and exclude
    /// this process; publishes in flight end as `.publishFailed`.
    public mutating func onLeaveCluster(now: Tick) -> [GroupEffect] {
        var e: [GroupEffect] = []
        run(now, &e) { n in
            n.failAllPublishes(.leftCluster)
            n.phase = .left
        }
        return e
    }

    // MARK: Queries (for the shell, tests and the simulator)

    public var currentView: ClusterView? { log?.view }
    public var isMember: Bool { inView }
    public var isInPrimary: Bool {
        if case .member(let box) = phase { return !box.value.blocked }
        return false
    }
    public var isFlushing: Bool { flushing }
    /// The latest tick by which this process had heard (any message of the
    /// current view) from a majority of its view, itself counted as heard
    /// at `now`: the lock lease (docs/patterns.md, "Locks") ends once
    /// `now` is a fraction of the suspicion timeout past it. Nil outside a
    /// view. Heard ticks restart at a view's install.
    public func majorityHeardAt(now: Tick) -> Tick? {
        guard case .member = phase, let log else { return nil }
        let heard = log.view.members.indices.map { $0 == log.myRank ? now : log.heardAt[$0] }.sorted(by: >)
        // The k-th most recent, k = a majority of the view.
        return heard[heard.count / 2]
    }
    /// Whether this process holds message `id` (received, possibly already
    /// garbage-collected): used by the simulator to check P8.
    public func holds(_ id: MessageID) -> Bool { log?.holds(id) ?? false }
    public func groupView(_ pattern: TopicPattern) -> GroupView? {
        guard let log, let members = incarnation.groups.members(pattern) else { return nil }
        return GroupView(pattern: pattern, id: incarnation.groups.record(pattern)?.view ?? 0, clusterView: log.view.id, members: members)
    }
    public var groupCount: Int { incarnation.groups.count }
    /// Every group of the cluster and its members, as this node derives them.
    public var allGroupViews: [GroupView] {
        guard let log else { return [] }
        return incarnation.groups.table.values.map { GroupView(pattern: $0.pattern, id: $0.view, clusterView: log.view.id, members: $0.members) }
    }
    /// Messages buffered in the current view (unstable or undelivered).
    public var bufferedMessageCount: Int { log.map { $0.streams.reduce(0) { $0 + $1.buffer.count } } ?? 0 }
    public var pendingPublishCount: Int { pending.count }
    public var position: StreamPosition? { log?.position }
    /// The view this process accepted in a flush and has not installed yet:
    /// it may be committed, by this coordinator or a later one (Paxos).
    public var acceptedView: ClusterView? {
        if case .member(let box) = phase { return box.value.flush.promise?.accepted?.install.view }
        return nil
    }

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
        guard inView else { return }
        if !member.newEntries.isEmpty {
            let msg = ProtocolMessage.order(view: vlog.view.id, first: member.newEntriesFirst, entries: member.newEntries)
            broadcast(msg)
            member.newEntries.removeAll(keepingCapacity: true)
        }
        if member.ackDirty {
            member.ackDirty = false
            receivedSinceAck = 0
            if !vlog.isSequencer {
                send(vlog.view.coordinator.node, .ack(view: vlog.view.id, digest: claimedDigest))
            } else if !flushing && vlog.recomputeStable() {
                // The sequencer's own receipt can be what stability waited for.
                member.stableDirty = true
                deliver(hint: nil)
            }
        }
        if member.stableDirty {
            member.stableDirty = false
            broadcast(.stable(view: vlog.view.id, digest: vlog.stable))
        }
        if !incarnation.deferred.isEmpty { serveDeferred() }
    }

    var claimedDigest: Digest { member.flush.promise?.frozenDigest ?? vlog.digest }

    @inline(__always)
    mutating func send(_ to: NodeID, _ m: ProtocolMessage) {
        out.append(.send(to: to, m))
    }

    mutating func broadcast(_ m: ProtocolMessage) {
        guard inView else { return }
        for p in vlog.view.members where p != me { out.append(.send(to: p.node, m)) }
    }
}

extension GroupNode: CustomStringConvertible {
    /// The membership state in one line, for logs and failed checks.
    public var description: String {
        var s = "\(me) \(phase.name) view \(log?.view.description ?? "-")"
        if case .member(let box) = phase {
            let m = box.value
            if let p = m.flush.promise { s += " flushing promised \(p.promised)" }
            if let c = m.flush.coordinator { s += " coordinating \(c.proposal) reports \(c.reports.keys.sorted())" }
            if m.blocked { s += " blocked" }
            if !m.suspects.isEmpty { s += " suspects \(m.suspects.sorted())" }
        }
        if !incarnation.joiners.isEmpty { s += " joiners \(incarnation.joiners)" }
        s += " pending \(pending.count) inflight \(inflight.count)"
        return s
    }
}

extension GroupNode {
    /// The stable digest this process knows and its own digest, for
    /// invariant checks in tests and the simulator.
    public var stabilityDebug: (view: ViewID, stable: Digest, held: Digest)? {
        guard let log else { return nil }
        return (log.view.id, log.stable, log.digest)
    }
}
