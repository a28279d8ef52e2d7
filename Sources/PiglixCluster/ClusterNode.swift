import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixGroups
import PiglixTopics

#if canImport(Glibc)
import Glibc
#endif

/// What the broker does with the core's application effects. Every call
/// runs on the cluster's event loop, in the order the core emitted them.
public protocol ClusterApplication: AnyObject, Sendable {
    /// Messages to hand to local subscribers, in delivery order: the
    /// consecutive deliveries of one core event, handed over together so the
    /// broker takes its lock once per batch.
    func clusterDeliver(_ batch: [ClusterDelivery])
    /// The cluster view, primary state or incarnation changed.
    func clusterStatusChanged(_ status: ClusterStatus)
    /// A local group's view changed (members by node name).
    func clusterGroupViewChanged(pattern: TopicPattern, view: UInt64, members: [String], primary: Bool)
    /// The application state of `pattern` now: its retained history.
    func clusterCheckpoint(pattern: TopicPattern) -> [UInt8]
    /// Replace the state of `pattern` with a checkpoint; the group is live
    /// locally from here on.
    func clusterApplyCheckpoint(pattern: TopicPattern, state: [UInt8])
    /// Local groups were dropped (rejoining as a new incarnation): they are
    /// joined again, with state transfer.
    func clusterRejoining()
}

/// One delivery with this node's delivery position right after it (per
/// origin rank of the view, how many of its messages were delivered): the
/// message's resume id.
public struct ClusterDelivery: Sendable {
    public var delivery: Delivery
    public var viewEpoch: UInt64
    public var delivered: [UInt64]
}

/// How a publish handed to the cluster ended.
public enum ClusterPublishOutcome: Sendable, Equatable {
    /// The level was reached here; the position is this node's delivery
    /// position at that moment (the message's id).
    case acked(viewEpoch: UInt64, delivered: [UInt64])
    case refused(PublishRefusal)
    case failed(PublishFailure)
}

/// One publish handed to `ClusterNode.publish`.
public struct ClusterPublish: Sendable {
    public var destination: Destination
    public var level: DeliveryLevel
    public var session: UInt64
    public var payload: [UInt8]
    public init(destination: Destination, level: DeliveryLevel, session: UInt64, payload: [UInt8]) {
        self.destination = destination
        self.level = level
        self.session = session
        self.payload = payload
    }
}

/// Counters a scrape reads (`/metrics`).
public struct ClusterCounters: Sendable {
    public var viewChanges: UInt64 = 0
    public var suspicions: UInt64 = 0
    public var retransmissions: UInt64 = 0
    public var flushes: UInt64 = 0
    public var flushSecondsTotal: Double = 0
    public var lastFlushSeconds: Double = 0
    public var bufferedMessages: Int = 0
    public var pendingPublishes: Int = 0
    public var framesSent: UInt64 = 0
    public var framesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var decodeErrors: UInt64 = 0
    /// Peer connections refused in the handshake (no key, another key, a
    /// bad proof or frame).
    public var refusedPeers: UInt64 = 0
    /// Decoded protocol messages dropped before the core acted on them, by
    /// reason (`RejectReason`; every reason present, from 0).
    public var rejectedMessages: [String: UInt64] = Dictionary(uniqueKeysWithValues: RejectReason.allCases.map { ($0.rawValue, 0) })
}

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
    private let box: NIOLoopBoundBox<State>
    private let snapshot: NIOLockedValueBox<ClusterStatus>
    private let counterBox: NIOLockedValueBox<ClusterCounters>

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
        let core = try GroupNode(settings: settings.groupSettings, me: ProcessID(node: me, incarnation: startIncarnation))
        self.box = NIOLoopBoundBox.makeBoxSendingValue(State(core: core), as: State.self, eventLoop: loop)
        self.snapshot = NIOLockedValueBox(
            ClusterStatus(
                node: settings.nodeName, incarnation: startIncarnation, view: 0, members: [], coordinator: nil, primary: false,
                state: "joining"))
        self.counterBox = NIOLockedValueBox(ClusterCounters())
        var frameSettings = TransportSettings()
        frameSettings.frameBytesMax = settings.frameBytesMax
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

    private var now: Tick {
        let elapsed = NIODeadline.now() - startedAt
        return UInt64(max(elapsed.nanoseconds / 1_000_000, 0))
    }

    private func refused(_ why: String) {
        box.value.counters.refusedPeers += 1
        counterBox.withLockedValue { $0.refusedPeers = self.box.value.counters.refusedPeers }
        logger.error("refused a cluster connection: \(why)")
    }

    private func connected(_ peer: Peer) {
        let id = nodeID(forName: peer.name)
        box.value.names[id] = peer.name
        box.value.core.addSeed(id)
    }

    private func received(_ body: ByteBuffer, from peer: Peer) {
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

    private func timerFired() {
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
    private func considerBootstrap(now: Tick) {
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

    // MARK: Effects

    /// Carries out the core's effects in order.
    private func execute(_ initial: [GroupEffect]) {
        var queue = initial
        var index = 0
        let app = box.value.application
        var statusDirty = false
        var deliveries: [ClusterDelivery] = []
        while index < queue.count {
            let effect = queue[index]
            index += 1
            switch effect {
            case .send, .deliver, .setTimer: break
            default:
                // Every other effect sees the deliveries before it applied.
                if !deliveries.isEmpty {
                    app?.clusterDeliver(deliveries)
                    deliveries.removeAll(keepingCapacity: true)
                }
            }
            switch effect {
            case .send(let to, let message):
                enqueue(message, to: to)
            case .deliver(let d):
                trackPosition(d.message.id)
                deliveries.append(ClusterDelivery(delivery: d, viewEpoch: d.message.id.view.epoch, delivered: box.value.delivered))
            case .installClusterView:
                box.value.counters.viewChanges += 1
                statusDirty = true
            case .installGroupView(let gv):
                app?.clusterGroupViewChanged(
                    pattern: gv.pattern, view: gv.id, members: gv.members.map { name($0.node) },
                    primary: peekCore { $0.isInPrimary })
            case .primaryLost:
                statusDirty = true
            case .rejoining:
                statusDirty = true
                app?.clusterRejoining()
            case .requestCheckpoint(let request):
                let state = app?.clusterCheckpoint(pattern: request.pattern) ?? []
                queue.append(contentsOf: box.value.core.onCheckpoint(ticket: request.ticket, state: state, now: now))
            case .applyCheckpoint(let pattern, let state):
                app?.clusterApplyCheckpoint(pattern: pattern, state: state)
            case .publishAcked(let token, _, _):
                complete(token, .acked(viewEpoch: box.value.positionView?.epoch ?? 0, delivered: box.value.delivered))
            case .publishRefused(let token, let why):
                complete(token, .refused(why))
            case .publishFailed(let token, _, let why):
                complete(token, .failed(why))
            case .setTimer(let at):
                schedule(at)
            case .rejectedMessage(let from, let reason):
                box.value.counters.rejectedMessages[reason.rawValue, default: 0] += 1
                logger.warning("rejected a protocol message from \(name(from.node)): \(reason.rawValue)")
            }
        }
        if !deliveries.isEmpty { app?.clusterDeliver(deliveries) }
        flushOutgoing()
        observeFlush()
        // The core regains the primary silently (a suspect is heard again):
        // compare rather than wait for an effect.
        // (Read through the box: a copy of the core would retain every field.
        // The view itself only changes with an effect.)
        if statusDirty || box.value.lastStatus == nil || box.value.lastStatus?.primary != peekCore({ $0.isInPrimary }) {
            publishStatus(app)
        }
        let (buffered, pending) = peekCore { ($0.bufferedMessageCount, $0.pendingPublishCount) }
        let counters = box.value.counters
        counterBox.withLockedValue {
            $0 = counters
            $0.bufferedMessages = buffered
            $0.pendingPublishes = pending
        }
    }

    /// Reads the core in place. A computed property of the core (another
    /// module) read straight through `box.value.core` copied the whole core
    /// first (a retain and a release per field), several times per batch.
    @inline(__always)
    private func peekCore<R>(_ read: (inout GroupNode) -> R) -> R { read(&box.value.core) }

    private func trackPosition(_ id: MessageID) {
        if box.value.positionView != id.view {
            box.value.positionView = id.view
            box.value.delivered.removeAll(keepingCapacity: true)
        }
        let r = Int(id.origin)
        if box.value.delivered.count <= r { box.value.delivered.append(contentsOf: repeatElement(0, count: r + 1 - box.value.delivered.count)) }
        if box.value.delivered[r] < id.seq { box.value.delivered[r] = id.seq }
    }

    private func complete(_ token: UInt64, _ outcome: ClusterPublishOutcome) {
        guard let (completion, i) = box.value.acks.removeValue(forKey: token) else { return }
        completion.complete(i, outcome)
    }

    private func enqueue(_ message: ProtocolMessage, to node: NodeID) {
        var buffer = box.value.outgoing.removeValue(forKey: node) ?? {
            var b = ByteBuffer()
            b.reserveCapacity(256)
            b.writeVarint(box.value.core.me.incarnation)
            return b
        }()
        if case .data(let m) = message {
            // A multicast goes to every member: encode it once.
            if box.value.lastData != m {
                box.value.lastDataBytes.clear()
                MessageCodec.encode(message, into: &box.value.lastDataBytes)
                box.value.lastData = m
            }
            buffer.writeImmutableBuffer(box.value.lastDataBytes)
        } else {
            MessageCodec.encode(message, into: &buffer)
        }
        box.value.outgoing[node] = buffer
    }

    private func flushOutgoing() {
        guard !box.value.outgoing.isEmpty else { return }
        let outgoing = box.value.outgoing
        box.value.outgoing.removeAll(keepingCapacity: true)
        for (node, body) in outgoing {
            guard let peer = box.value.names[node] else { continue }
            if transport.send(to: peer, body) {
                box.value.counters.framesSent += 1
                box.value.counters.bytesSent += UInt64(body.readableBytes)
            }
        }
    }

    private func schedule(_ at: Tick) {
        guard at < box.value.timerAt, !box.value.stopped else { return }
        box.value.timer?.cancel()
        box.value.timerAt = at
        let delay = Int64(at) - Int64(now)
        box.value.timer = loop.scheduleTask(in: .milliseconds(max(delay, 0))) { self.timerFired() }
    }

    private func observeFlush() {
        let flushing = peekCore { $0.isFlushing }
        if flushing, box.value.flushingSince == nil {
            box.value.flushingSince = .now()
        } else if !flushing, let since = box.value.flushingSince {
            box.value.flushingSince = nil
            let seconds = Double((NIODeadline.now() - since).nanoseconds) / 1e9
            box.value.counters.flushes += 1
            box.value.counters.flushSecondsTotal += seconds
            box.value.counters.lastFlushSeconds = seconds
        }
    }

    private func publishStatus(_ app: (any ClusterApplication)?) {
        let core = box.value.core  // rare: only when the status may have changed
        let status: ClusterStatus
        if let view = core.currentView {
            let state = core.isInPrimary ? "member" : "minority"
            status = ClusterStatus(
                node: settings.nodeName, incarnation: core.me.incarnation, view: view.id.epoch,
                members: view.members.map { name($0.node) }, coordinator: name(view.coordinator.node),
                primary: core.isInPrimary, state: state)
        } else {
            status = ClusterStatus(
                node: settings.nodeName, incarnation: core.me.incarnation, view: 0, members: [], coordinator: nil,
                primary: false, state: box.value.stopped ? "left" : "joining")
        }
        guard status != box.value.lastStatus else { return }
        if let last = box.value.lastStatus, status.members.count < last.members.count, status.view > last.view {
            box.value.counters.suspicions += UInt64(last.members.count - status.members.count)
        }
        box.value.lastStatus = status
        snapshot.withLockedValue { $0 = status }
        logger.info(
            "cluster view",
            metadata: [
                "view": "\(status.view)", "members": "\(status.members)", "primary": "\(status.primary)", "state": "\(status.state)",
            ])
        app?.clusterStatusChanged(status)
    }

    // MARK: Seeds

    private func scheduleSeedResolution() {
        let interval = TimeAmount.milliseconds(Int64(settings.seedResolveMilliseconds))
        loop.scheduleTask(in: interval) {
            guard !self.box.value.stopped else { return }
            let seeds = self.settings.seeds
            let logger = self.logger
            Task {
                let addresses = await Self.resolve(seeds, logger: logger)
                self.loop.execute { self.transport.connect(to: addresses) }
                self.scheduleSeedResolution()
            }
        }
    }

    /// Every `ip:port` the seed entries name (a DNS name may give several).
    static func resolve(_ seeds: [String], logger: Logger) async -> [String] {
        var out: [String] = []
        for seed in seeds {
            guard let (host, port) = ClusterTransport.split(seed) else {
                logger.warning("ignoring seed \(seed): expected host:port")
                continue
            }
            // getaddrinfo blocks: it runs on NIO's blocking-I/O thread pool,
            // never on a cooperative-pool thread.
            var ips = (try? await NIOThreadPool.singleton.runIfActive { resolveHost(host) }) ?? []
            if ips.isEmpty {
                // Let the dialer try the name itself (and say why it fails).
                logger.debug("seed \(host) does not resolve (yet); dialing it by name")
                ips = [host]
            }
            for ip in ips {
                let address = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                if !out.contains(address) { out.append(address) }
            }
        }
        return out
    }
}

/// The addresses a host name resolves to (IP literals resolve to themselves).
func resolveHost(_ host: String) -> [String] {
    // An IP literal needs no resolver (a minimal container image may have
    // no NSS configuration at all).
    var v4 = in_addr()
    var v6 = in6_addr()
    if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return [host] }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
    defer { freeaddrinfo(first) }
    var out: [String] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
            let ip = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !out.contains(ip) { out.append(ip) }
        }
        cursor = info.pointee.ai_next
    }
    return out
}

/// A weak reference that can be captured by `@Sendable` closures: the
/// transport's callbacks need the node, which does not exist yet when the
/// transport is created in the node's `init`.
///
/// `@unchecked` is sound here and nowhere else it might be reused: `value`
/// is written once, at the end of `ClusterNode.init`, before `start` lets
/// the transport accept or dial a connection (the only source of
/// callbacks), and only read after that; the start's `loop.submit` orders
/// the write before every read on the loop.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}
