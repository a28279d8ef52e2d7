import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixGroups
import PiglixTopics

#if canImport(Glibc)
import Glibc
#endif

/// One node of a Piglix cluster: the sans-IO core (`GroupNode`) driven over
/// the peer transport. It only executes the core's effects (etcd raft's
/// `Ready` loop): sends are grouped per peer into one frame per handler,
/// timers become scheduled tasks, application effects go to the broker.
/// Everything runs on one event loop, so the core needs no lock.
public final class ClusterNode: Sendable {
    public let settings: ClusterSettings
    public let loop: any EventLoop
    let group: MultiThreadedEventLoopGroup
    let transport: ClusterTransport
    let logger: Logger
    let me: NodeID
    let startIncarnation: UInt64
    let startedAt: NIODeadline
    /// Where the core's acceptor state is written (nil: not kept).
    let acceptorFile: AcceptorFile?
    let box: NIOLoopBoundBox<State>
    let snapshot: NIOLockedValueBox<ClusterStatus>
    let counterBox: NIOLockedValueBox<ClusterCounters>

    /// A class, not a struct: `NIOLoopBoundBox.value` has a plain getter, so
    /// every read like `box.value.names[node]` copied the whole state (the
    /// core with all its arrays: a retain and a release per field) before
    /// picking one field. Through a reference a read is one field.
    final class State {
        init(core: GroupNode) { self.core = core }
        var core: GroupNode
        var application: (any ClusterApplication)?
        var names: [NodeID: String] = [:]
        var timer: Scheduled<Void>?
        var timerAt: Tick = .max
        var started = false
        var stopped = false
        /// Last time a peer showed that a cluster exists (any message other
        /// than a join request): no bootstrap while it is recent.
        var clusterHeardAt: Tick?
        var acks: [UInt64: (completion: PublishCompletion, index: Int)] = [:]
        var nextToken: UInt64 = 0
        /// Delivery position of the view being delivered (the resume id).
        var positionView: ViewID?
        var delivered: [UInt64] = []
        var flushingSince: NIODeadline?
        var lastData: DataMessage?
        var lastDataBytes = ByteBuffer()
        var outgoing: [NodeID: ByteBuffer] = [:]
        /// Checkpoints being sent in chunks, by the core's ticket.
        var checkpoints: [UInt64: any CheckpointReader] = [:]
        var counters = ClusterCounters()
        var lastStatus: ClusterStatus?
        var lastSuspectCount = 0
    }

    /// One publish batch's outcomes as they arrive. Created, stored (in the
    /// loop-bound state) and completed on the loop only, so it is not
    /// Sendable; only its `done` closure leaves the loop.
    final class PublishCompletion {
        var remaining: Int
        var outcomes: [ClusterPublishOutcome]
        let done: @Sendable ([ClusterPublishOutcome]) -> Void
        init(count: Int, done: @escaping @Sendable ([ClusterPublishOutcome]) -> Void) {
            self.remaining = count
            self.outcomes = Array(repeating: .failed(.leftCluster), count: count)
            self.done = done
        }
        func complete(_ index: Int, _ outcome: ClusterPublishOutcome) {
            outcomes[index] = outcome
            remaining -= 1
            if remaining == 0 { done(outcomes) }
        }
    }

    /// Creates the node (not started). The incarnation is the start time in
    /// microseconds, so a restarted node is always a newer incarnation.
    public init(settings: ClusterSettings, logger: Logger = Logger(label: "piglix.cluster")) throws {
        try settings.validate()
        self.settings = settings
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = group.next()
        self.me = nodeID(forName: settings.nodeName)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.startIncarnation = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec / 1000)
        self.startedAt = .now()
        var restored: AcceptorState?
        var acceptorFile: AcceptorFile?
        if let directory = settings.dataDirectory {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let file = AcceptorFile(directory: directory, nodeName: settings.nodeName)
                restored = try file.read()
                acceptorFile = file
            } catch {
                logger.error("the data directory \(directory) cannot be used (\(error)); this node keeps no flush votes across restarts")
            }
        }
        self.acceptorFile = acceptorFile
        let core = try GroupNode(settings: settings.groupSettings, me: ProcessID(node: me, incarnation: startIncarnation), restoring: restored)
        self.box = NIOLoopBoundBox.makeBoxSendingValue(State(core: core), as: State.self, eventLoop: loop)
        self.snapshot = NIOLockedValueBox(
            ClusterStatus(
                node: settings.nodeName, incarnation: startIncarnation, view: 0, members: [], coordinator: nil, primary: false,
                state: "joining"))
        self.counterBox = NIOLockedValueBox(ClusterCounters())
        var frameSettings = TransportSettings()
        frameSettings.frameBytesMax = settings.frameBytesMax
        frameSettings.fragmentBytes = settings.fragmentBytes
        frameSettings.messageBytesMax = settings.protocolMessageBytesMax
        frameSettings.compressFramesAtBytes = settings.compressFramesAtBytes
        frameSettings.clusterKey = settings.clusterKey
        var transportRef: ClusterTransport!
        let hello = Hello(name: settings.nodeName, incarnation: startIncarnation, listenAddress: settings.advertiseAddress)
        // The callbacks need `self`; they are only called after `start`.
        let weakSelf = WeakBox<ClusterNode>()
        transportRef = ClusterTransport(
            loop: loop, me: hello, settings: frameSettings,
            callbacks: TransportCallbacks(
                received: { peer, body in weakSelf.value?.received(body, from: peer) },
                connected: { peer in weakSelf.value?.connected(peer) },
                disconnected: { _ in },
                refused: { why in weakSelf.value?.refused(why) }))
        self.transport = transportRef
        weakSelf.value = self
    }

    // MARK: Lifecycle

    /// Listens, dials the seeds and starts the core. Returns the bound port.
    @discardableResult
    public func start(application: any ClusterApplication) async throws -> Int {
        let port = try await transport.listen(host: settings.listenHost, port: settings.listenPort).get()
        let addresses = await Self.resolve(settings.seeds, logger: logger)
        try await loop.submit {
            self.box.value.application = application
            self.box.value.names[self.me] = self.settings.nodeName
            self.box.value.started = true
            self.transport.connect(to: addresses)
            var effects: [GroupEffect] = []
            self.box.value.core.onStart(seeds: [], bootstrap: false, now: self.now, into: &effects)
            self.execute(effects)
        }.get()
        scheduleSeedResolution()
        if settings.clusterKey == nil {
            logger.warning(
                "no cluster key: the cluster port admits any process that reaches it as a node; set --cluster-key-file (docs/operations.md, \"Cluster key\")",
                metadata: ["port": "\(port)"])
        }
        logger.info(
            "cluster node started",
            metadata: ["node": "\(settings.nodeName)", "incarnation": "\(startIncarnation)", "port": "\(port)", "seeds": "\(addresses)"])
        return port
    }

    /// Leaves the cluster (peers see the silence and install a view without
    /// this node) and closes every connection.
    public func shutdown() async {
        try? await loop.submit {
            guard !self.box.value.stopped else { return }
            self.box.value.stopped = true
            self.box.value.timer?.cancel()
            var effects: [GroupEffect] = []
            if self.box.value.started {
                effects = self.box.value.core.onLeaveCluster(now: self.now)
            }
            self.execute(effects)
        }.get()
        try? await transport.close().get()
        try? await group.shutdownGracefully()
    }

    // MARK: Queries

    public var status: ClusterStatus { snapshot.withLockedValue { $0 } }
    public var counters: ClusterCounters { counterBox.withLockedValue { $0 } }

    /// Every group of the cluster (pattern, view epoch, member names), as
    /// this node derives them from the cluster's message order.
    public func groupViews() async -> [(pattern: TopicPattern, view: UInt64, members: [String])] {
        (try? await loop.submit {
            self.box.value.core.allGroupViews.map { g in
                (g.pattern, g.id, g.members.map { self.name($0.node) })
            }
        }.get()) ?? []
    }

    /// How long ago this node last heard from a majority of its view (itself
    /// counted), nil outside a view: the lock lease (docs/patterns.md, "Locks").
    public func majorityHeardAgo() async -> Duration? {
        (try? await loop.submit { () -> Duration? in
            let now = self.now
            guard let at = self.peekCore({ $0.majorityHeardAt(now: now) }) else { return nil }
            return .milliseconds(Int64(now) - Int64(at))
        }.get()) ?? nil
    }

    /// A node silent this long is suspected (`--suspicion-timeout`).
    public var suspicionTimeout: Duration { .milliseconds(settings.suspicionTimeoutMilliseconds) }

    /// The name of a node the cluster knows, or its id.
    func name(_ node: NodeID) -> String {
        box.value.names[node] ?? "node-\(String(node.rawValue, radix: 16))"
    }

    // MARK: Inputs from the broker

    /// Publishes a batch; `done` gets one outcome per publish, in order,
    /// once every one was acknowledged, refused or failed.
    public func publish(_ batch: [ClusterPublish], done: @escaping @Sendable ([ClusterPublishOutcome]) -> Void) {
        guard !batch.isEmpty else {
            done([])
            return
        }
        loop.execute {
            let completion = PublishCompletion(count: batch.count, done: done)
            guard !self.box.value.stopped else {
                for i in batch.indices { completion.complete(i, .failed(.leftCluster)) }
                return
            }
            var effects: [GroupEffect] = []
            let now = self.now
            for (i, p) in batch.enumerated() {
                self.box.value.nextToken += 1
                let token = self.box.value.nextToken
                self.box.value.acks[token] = (completion, i)
                let request = PublishRequest(token: token, session: p.session, destination: p.destination, level: p.level, payload: p.payload)
                self.box.value.core.onPublish(request, now: now, into: &effects)
            }
            self.execute(effects)
        }
    }

    public func publish(_ batch: [ClusterPublish]) async -> [ClusterPublishOutcome] {
        await withCheckedContinuation { continuation in
            publish(batch) { continuation.resume(returning: $0) }
        }
    }

    /// A pattern got its first local subscriber.
    public func join(_ pattern: TopicPattern) {
        loop.execute {
            guard !self.box.value.stopped else { return }
            self.execute(self.box.value.core.onJoin(pattern, now: self.now))
        }
    }

    /// A pattern lost its last local subscriber.
    public func leave(_ pattern: TopicPattern) {
        loop.execute {
            guard !self.box.value.stopped else { return }
            self.execute(self.box.value.core.onLeave(pattern, now: self.now))
        }
    }

    // MARK: Inputs from the network

    var now: Tick {
        let elapsed = NIODeadline.now() - startedAt
        return UInt64(max(elapsed.nanoseconds / 1_000_000, 0))
    }

    func refused(_ why: String) {
        box.value.counters.refusedPeers += 1
        counterBox.withLockedValue { $0.refusedPeers = self.box.value.counters.refusedPeers }
        logger.error("refused a cluster connection: \(why)")
    }

    func connected(_ peer: Peer) {
        let id = nodeID(forName: peer.name)
        box.value.names[id] = peer.name
        box.value.core.addSeed(id)
    }

    func received(_ body: ByteBuffer, from peer: Peer) {
        guard box.value.started, !box.value.stopped else { return }
        var body = body
        box.value.counters.framesReceived += 1
        box.value.counters.bytesReceived += UInt64(body.readableBytes)
        let node = nodeID(forName: peer.name)
        if box.value.names[node] == nil { box.value.names[node] = peer.name }
        var effects: [GroupEffect] = []
        do {
            let incarnation = try body.readVarint()
            let from = ProcessID(node: node, incarnation: incarnation)
            let now = self.now
            while body.readableBytes > 0 {
                let message = try MessageCodec.decode(&body)
                switch message {
                case .joinRequest: break
                case .nak: box.value.counters.retransmissions += 1
                default: box.value.clusterHeardAt = now
                }
                box.value.core.onMessage(from: from, message, now: now, into: &effects)
            }
        } catch {
            box.value.counters.decodeErrors += 1
            logger.warning("dropping the rest of a frame from \(peer.name): \(error)")
        }
        execute(effects)
    }

    func timerFired() {
        box.value.timer = nil
        box.value.timerAt = .max
        guard !box.value.stopped else { return }
        let now = self.now
        var effects: [GroupEffect] = []
        box.value.core.onTick(now: now, into: &effects)
        execute(effects)
        considerBootstrap(now: now)
    }

    /// Forms the first view alone when no cluster answered: only the node
    /// with the smallest name among those it reaches, only after the
    /// bootstrap wait, and only if no member spoke to it lately. Two nodes
    /// that both bootstrap (a partition at start) merge later through view
    /// notices (docs/operations.md, "Forming a cluster").
    func considerBootstrap(now: Tick) {
        let core = box.value.core
        guard !core.isMember, !box.value.stopped else { return }
        let wait = UInt64(settings.effectiveBootstrapWaitMilliseconds)
        guard now >= wait else { return }
        if let heard = box.value.clusterHeardAt, now < heard + wait { return }
        let peers = transport.connectedPeers.map(\.name)
        guard peers.allSatisfy({ settings.nodeName < $0 }) else { return }
        logger.notice("no cluster answered within \(wait) ms: forming the first view", metadata: ["peers": "\(peers)"])
        var fresh = core
        // A new start of the core as the first member.
        var effects: [GroupEffect] = []
        fresh.onStart(seeds: [], bootstrap: true, now: now, into: &effects)
        for id in box.value.names.keys { fresh.addSeed(id) }
        box.value.core = fresh
        execute(effects)
    }
}
