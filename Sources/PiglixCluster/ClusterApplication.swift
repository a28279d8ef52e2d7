import PiglixGroups
import PiglixTopics

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
    /// The same group view, right after `clusterGroupViewChanged`, as the
    /// lock table needs it (docs/patterns.md, "Locks"): each member process
    /// as `processName(node:incarnation:)` (a restarted node is another process), and the
    /// epoch of the cluster view it belongs to (a joiner orders the views it
    /// saw during its transfer against the deliveries released after it).
    func clusterGroupViewInstalled(pattern: TopicPattern, view: UInt64, clusterEpoch: UInt64, processes: [String])
    /// The application state of `pattern` now (its retained history), read
    /// later in chunks: a snapshot, not a copy of the bytes.
    func clusterCheckpoint(pattern: TopicPattern) -> any CheckpointReader
    /// Apply one chunk of a checkpoint of `pattern`: `first` replaces the
    /// group's state, later chunks add to it; after `last` the group is
    /// live locally. False: the chunk is unreadable (the transfer restarts
    /// from another member).
    func clusterApplyCheckpoint(pattern: TopicPattern, chunk: [UInt8], first: Bool, last: Bool) -> Bool
    /// Local groups were dropped (rejoining as a new incarnation): they are
    /// joined again, with state transfer.
    func clusterRejoining()
    /// A cluster view was installed, in the core's effect order: after the
    /// deliveries of the previous view, before any of this one (the work
    /// queue table, docs/patterns.md, drops the members of dead processes
    /// here). `me` is this process in it.
    func clusterViewInstalled(epoch: UInt64, members: [ProcessID], me: ProcessID)
    /// Before the first chunk of a checkpoint of `pattern` is applied: the
    /// publishes whose re-send the checkpoint's state already holds
    /// (`CheckpointChunk.skip`; live deliveries carry the same as
    /// `Delivery.skippedGroups`). Only an application that keeps a group's
    /// state from deliveries outside `Delivery.groups` needs it.
    func clusterCheckpointSkips(pattern: TopicPattern, skip: [PublishID])
    /// The state of an ordered-state group (`GroupSettings.orderedStateGroups`)
    /// taken from a checkpoint held a message a flush then cut: a new
    /// checkpoint will replace it (`clusterApplyCheckpoint` with `first`),
    /// and what the application keeps from deliveries outside the group
    /// must be kept from here for after it, as at a join
    /// (`GroupEffect.transferRestarted`).
    func clusterTransferRestarted(pattern: TopicPattern)
    /// The prerequisite group's state holds messages the primary never
    /// delivers (`GroupEffect.forgetDeliveries`): undo what they did.
    func clusterForgetDeliveries(pattern: TopicPattern, ids: [MessageID])
}

extension ClusterApplication {
    public func clusterViewInstalled(epoch: UInt64, members: [ProcessID], me: ProcessID) {}
    public func clusterCheckpointSkips(pattern: TopicPattern, skip: [PublishID]) {}
    public func clusterTransferRestarted(pattern: TopicPattern) {}
    public func clusterForgetDeliveries(pattern: TopicPattern, ids: [MessageID]) {}
}

extension ClusterApplication {
    public func clusterGroupViewInstalled(pattern: TopicPattern, view: UInt64, clusterEpoch: UInt64, processes: [String]) {}
}

/// A snapshot of a group's state, read as a sequence of chunks that each
/// decode on their own (the joiner applies them as they come).
public protocol CheckpointReader: Sendable {
    /// The next chunk: about `bytes` long (one item alone may be longer), and
    /// whether it is the last. A snapshot of nothing is one empty last chunk.
    mutating func nextChunk(bytes: Int) -> (chunk: [UInt8], last: Bool)
}

/// One delivery with this node's delivery position right after it (per
/// origin rank of the view, how many of its messages were delivered): the
/// message's resume id.
public struct ClusterDelivery: Sendable {
    public var delivery: Delivery
    public var viewEpoch: UInt64
    public var delivered: [UInt64]
    /// Published at this node (its publisher waits for the ack).
    public var own: Bool = false
}

/// How a publish handed to the cluster ended.
public enum ClusterPublishOutcome: Sendable, Equatable {
    /// The level was reached here; the position is this node's delivery
    /// position at that moment (the message's id).
    /// `publish` names the message (the broker matches it with its delivery).
    case acked(viewEpoch: UInt64, delivered: [UInt64], publish: PublishID)
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

/// A process as the lock table names it: its node id in hexadecimal and its
/// incarnation, `3f2a…/2`. Computed from ids alone, so every node names
/// every process alike.
public func processName(node: NodeID, incarnation: UInt64) -> String {
    "\(String(node.rawValue, radix: 16))/\(incarnation)"
}
