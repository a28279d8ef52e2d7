import PiglixGroups
import PiglixTopics

/// How a node takes part in a cluster: `piglix serve --cluster-listen …
/// --seeds …` and the timings of the group protocol (docs/operations.md).
public struct ClusterSettings: Sendable {
    /// This node's stable name (`--node-id`); the same across restarts.
    public var nodeName: String
    /// Where peers connect (`--cluster-listen`).
    public var listenHost: String
    public var listenPort: Int
    /// The address peers are told to dial back (`--cluster-advertise`);
    /// defaults to the listen address.
    public var advertiseAddress: String
    /// `host:port` entries; a host name may resolve to several addresses
    /// (a Kubernetes headless service), all of which are dialed.
    public var seeds: [String]
    /// Heartbeat period between nodes.
    public var heartbeatMilliseconds: Int = 100
    /// A node silent this long is suspected (the view change follows).
    public var suspicionTimeoutMilliseconds: Int = 1000
    /// A node that has heard of no cluster this long after starting, and
    /// has the smallest name among the nodes it reaches, forms the first view.
    public var bootstrapWaitMilliseconds: Int?
    /// Re-resolve seed host names this often (pods come and go).
    public var seedResolveMilliseconds: Int = 5000
    /// zlib-compress inter-node frames of at least this many bytes (nil: never).
    public var compressFramesAtBytes: Int?
    /// Largest frame accepted from a peer.
    public var frameBytesMax: Int = 64 << 20
    /// A checkpoint travels in chunks of about this size (one retained
    /// message alone may make a chunk longer), at most
    /// `group.transferWindowChunks` of them unacknowledged.
    public var checkpointChunkBytes: Int = 1 << 20
    /// A frame body longer than this goes as fragments of this size: a flush
    /// report or install holding many messages never makes one huge frame.
    public var fragmentBytes: Int = 4 << 20
    /// The largest protocol message a node gathers from fragments. A flush
    /// report holds at most every member's unstable window.
    public var protocolMessageBytesMax: Int = 1 << 30
    /// Where the node keeps its flush votes across restarts (`--data-dir`,
    /// AcceptorFile.swift), so a majority that restarts together can form a
    /// primary view again; nil: nothing is kept, and such a majority waits
    /// for an operator.
    public var dataDirectory: String?
    /// The shared cluster key (`--cluster-key-file`); nil: the cluster port
    /// admits anyone who can reach it.
    public var clusterKey: ClusterKey?
    /// The core's bounds; the timings above override its tick fields.
    /// Members ack every 1,024 messages received (`ackEveryMessages`), so
    /// `fifo` and `total` traffic becomes stable at the rate it arrives;
    /// the unstable window of 16,384 messages then bounds how far a
    /// publisher runs ahead of the slowest member (at 130,000 msgs/s about
    /// 125 ms of queue) rather than capping throughput. The pending queue is
    /// shared by every publish stream of the node: it holds several streams'
    /// in-flight windows (`publishInFlightRecordsMax`, 8,192) before it
    /// refuses. The bytes bounds are the core's (32 MiB each).
    public var group: GroupSettings = {
        var g = GroupSettings()
        g.unstableMessagesMax = 1 << 14
        g.pendingPublishesMax = 1 << 16
        return g
    }()

    public init(nodeName: String, listenHost: String, listenPort: Int, advertiseAddress: String? = nil, seeds: [String]) {
        self.nodeName = nodeName
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.advertiseAddress = advertiseAddress ?? "\(listenHost):\(listenPort)"
        self.seeds = seeds
    }

    /// The bootstrap wait used when none is set: two suspicion timeouts, so
    /// a restarted node hears from a running cluster before it would form one.
    public var effectiveBootstrapWaitMilliseconds: Int { bootstrapWaitMilliseconds ?? 2 * suspicionTimeoutMilliseconds }

    /// The cluster-internal group of the broker's idempotence table
    /// (docs/patterns.md, "Idempotent publish"): every node joins it, and
    /// no other group goes active on a node before it has
    /// (`GroupSettings.prerequisiteGroup`).
    public static let idempotencePattern: TopicPattern = {
        do { return try TopicPattern("$piglix.idempotence") } catch { preconditionFailure("\(error)") }
    }()

    /// The cluster-internal group of the broker's work queue table
    /// (docs/patterns.md, "Work queues"): every node joins it at start.
    public static let queuesPattern: TopicPattern = {
        do { return try TopicPattern("$piglix.queues") } catch { preconditionFailure("\(error)") }
    }()

    /// The cluster-internal group of the broker's lock table
    /// (docs/patterns.md, "Locks"): every node joins it at start.
    public static let locksPattern: TopicPattern = {
        do { return try TopicPattern("$piglix.locks") } catch { preconditionFailure("\(error)") }
    }()

    /// The core's settings with one tick = 1 ms.
    public var groupSettings: GroupSettings {
        var g = group
        let hb = UInt64(max(heartbeatMilliseconds, 1))
        g.heartbeatIntervalTicks = hb
        g.suspicionTimeoutTicks = UInt64(max(suspicionTimeoutMilliseconds, 1))
        g.joinRetryTicks = max(3 * hb, 100)
        g.flushRetryTicks = max(3 * hb, 100)
        g.nakRetryTicks = max(hb / 2, 5)
        g.transferRetryTicks = max(UInt64(suspicionTimeoutMilliseconds), 200)
        g.deliverUnmatched = true
        // The broker's idempotence table decides every group's idempotent
        // deliveries: no group goes active before it is complete.
        g.prerequisiteGroup = Self.idempotencePattern
        // The work queue table's round robin counts messages in the agreed
        // order, and the lock table's queues requests in it
        // (docs/patterns.md, "Work queues", "Locks").
        g.orderedStateGroups = [Self.queuesPattern, Self.locksPattern]
        return g
    }

    /// Why the settings cannot run.
    public func validate() throws(GroupSettings.Invalid) {
        try groupSettings.validate()
    }

    /// Members whose full unstable windows one flush report must be able to
    /// carry under `protocolMessageBytesMax`.
    public static let flushReportMembersCovered = 16

    /// The one place where the size limits are checked against each other,
    /// at start-up, so a sender never builds what its peer would refuse:
    /// every frame fits `frameBytesMax` (larger bodies go as fragments), and
    /// every protocol message fits `protocolMessageBytesMax`: a data message
    /// of the largest application size, a checkpoint chunk (a chunk plus
    /// one retained message), and a flush report carrying the full unstable
    /// windows of `flushReportMembersCovered` members. Retention has no bound
    /// here: a checkpoint of any size travels in chunks.
    public func validateSizes(applicationMessageBytesMax: Int) throws(GroupSettings.Invalid) {
        let g = groupSettings
        // Sealing adds a kind byte and a 16-byte tag; the frame header 5 bytes.
        let frameOverhead = 64
        let messageOverhead = 64 << 10  // topic, headers, ids
        func atLeast(_ name: String, _ value: Int, _ minimum: Int, _ reason: String) throws(GroupSettings.Invalid) {
            if value < minimum { throw .tooSmall(name: name, value: UInt64(max(value, 0)), minimum: UInt64(minimum), reason: reason) }
        }
        try atLeast("checkpoint chunk bytes", checkpointChunkBytes, 1, "a checkpoint is sent in chunks of this size")
        try atLeast("fragment bytes", fragmentBytes, 1 << 10, "large frames are cut into fragments of this size")
        try atLeast("frame bytes max", frameBytesMax, fragmentBytes + frameOverhead, "a fragment and its framing must fit in one frame")
        let window = g.unstableBytesMax + g.unstableMessagesMax * 128
        try atLeast(
            "protocol message bytes max", protocolMessageBytesMax,
            max(
                applicationMessageBytesMax + messageOverhead, checkpointChunkBytes + applicationMessageBytesMax + messageOverhead,
                Self.flushReportMembersCovered * window),
            "a protocol message must hold the largest application message, a checkpoint chunk, and a flush report with \(Self.flushReportMembersCovered) members' unstable windows (\(g.unstableBytesMax) bytes, \(g.unstableMessagesMax) messages each)"
        )
    }
}

/// The cluster as this node sees it: `/v1/cluster`, `/readyz`, `view` records.
public struct ClusterStatus: Sendable, Equatable {
    public var node: String
    public var incarnation: UInt64
    /// The view's epoch: it grows with every view change.
    public var view: UInt64
    public var members: [String]
    public var coordinator: String?
    /// In the primary component: a member of the current primary view.
    public var primary: Bool
    /// `joining`, `member`, `minority` or `left`.
    public var state: String
    public init(node: String, incarnation: UInt64, view: UInt64, members: [String], coordinator: String?, primary: Bool, state: String) {
        self.node = node
        self.incarnation = incarnation
        self.view = view
        self.members = members
        self.coordinator = coordinator
        self.primary = primary
        self.state = state
    }
}

/// A node's stable name as the core's `NodeID`: FNV-1a over its UTF-8 bytes.
/// Every node computes the same id from the same name with no coordination.
public func nodeID(forName name: String) -> NodeID {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in name.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    return NodeID(h)
}
