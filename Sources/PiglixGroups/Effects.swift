import PiglixTopics

/// A publish handed to the core by the broker.
public struct PublishRequest: Hashable, Sendable {
    /// Chosen by the caller; echoed in the publish's ack or refusal.
    public var token: UInt64
    /// The publisher session; FIFO holds per session (and across levels).
    public var session: UInt64
    public var destination: Destination
    public var level: DeliveryLevel
    public var payload: [UInt8]
    public init(token: UInt64, session: UInt64, destination: Destination, level: DeliveryLevel, payload: [UInt8]) {
        self.token = token
        self.session = session
        self.destination = destination
        self.level = level
        self.payload = payload
    }
}

/// Why a publish was not taken.
public enum PublishRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    /// The node is not a member of the primary view (joining, minority, left).
    case notInPrimary
    /// Flow control: the pending queue is full (`pendingPublishesMax` or
    /// `pendingBytesMax`); the slowest member has not caught up.
    case pendingFull(messages: Int, bytes: Int)
    public var description: String {
        switch self {
        case .notInPrimary: "this node is not in the primary component"
        case .pendingFull(let m, let b): "pending queue full (\(m) messages, \(b) bytes): members are not keeping up"
        }
    }
}

/// Why an accepted publish ended without an acknowledgement: its outcome is
/// unknown (it may have been delivered by the primary after this node was
/// cut off).
public enum PublishFailure: Hashable, Sendable {
    case lostPrimary
    case leftCluster
}

/// A message handed to local subscribers.
public struct Delivery: Hashable, Sendable {
    public var message: DataMessage
    /// The cluster view it is delivered in.
    public var view: ViewID
    /// The local groups (patterns) it is delivered to; empty only with
    /// `deliverUnmatched`.
    public var groups: [TopicPattern]
    /// True for messages released after a checkpoint (state transfer), not
    /// part of the live stream of `view`.
    public var afterCheckpoint: Bool
    /// Local groups whose state already holds this message: their
    /// checkpoint's cut covers it (the provider delivered it before this
    /// node did, seed 403651), or it is the re-send of a message a
    /// checkpoint of theirs covered and a flush then cut (the skip list,
    /// seed 18533). Those groups are not in `groups`;
    /// an application state fed by deliveries outside `groups` (the work
    /// queue table, docs/patterns.md) must skip it too.
    public var skippedGroups: [TopicPattern] = []
}

/// What the application must snapshot for a joiner.
public struct CheckpointRequest: Hashable, Sendable {
    public var ticket: UInt64
    public var pattern: TopicPattern
    public var joiner: ProcessID
    /// The application's state for `pattern` right now, i.e. after every
    /// delivery effect emitted before this one and none after, is the
    /// checkpoint at this position.
    public var cut: StreamPosition
}

/// The core's output, interpreted by the shell in order (see
/// docs/virtual-synchrony.md, "The caller's duties").
public enum GroupEffect: Hashable, Sendable {
    /// Send to the current incarnation of a node (the transport knows it
    /// from its handshake and tells the receiver the sender's `ProcessID`).
    case send(to: NodeID, ProtocolMessage)
    case deliver(Delivery)
    case installClusterView(ClusterView)
    case installGroupView(GroupView)
    /// The node left the primary component (it cannot reach a majority of
    /// its last view): refuse publishes, tell subscribers.
    case primaryLost(lastView: ViewID)
    /// The node was excluded from the primary view and restarts as a new
    /// incarnation; local groups are joined again with state transfer.
    case rejoining(as: ProcessID)
    /// Snapshot the application state of a group now and answer with its
    /// first chunk: `onCheckpointChunk(ticket:state:last:)`.
    case requestCheckpoint(CheckpointRequest)
    /// Answer with the next chunk of the ticket's snapshot (flow control:
    /// the joiner acknowledged enough of the earlier ones).
    case requestCheckpointChunk(ticket: UInt64)
    /// The ticket's transfer ended before its last chunk (the joiner left
    /// or went silent): drop the snapshot.
    case releaseCheckpoint(ticket: UInt64)
    /// Apply a chunk of a checkpoint: the first chunk replaces the group's
    /// state, later ones add to it; after the last, deliveries continue from
    /// it. Answer with `onCheckpointChunkApplied`; `ok: false` (a chunk the
    /// application cannot read) restarts the transfer from another member.
    case applyCheckpointChunk(CheckpointChunk)
    /// The state of this group, taken from a checkpoint, holds a message the
    /// flush that just ended cut, and the group is one of
    /// `GroupSettings.orderedStateGroups` or no survivor will send that
    /// message again: it is not the primary's. Its transfer starts again: keep every
    /// delivery after this effect for after the new checkpoint, whose
    /// first chunk replaces the state (as at a join).
    case transferRestarted(TopicPattern)
    /// The state of the prerequisite group (`GroupSettings.prerequisiteGroup`,
    /// the broker's idempotence table), taken from a checkpoint, holds these
    /// messages, which the flush that just ended cut and whose origin it
    /// excluded: the primary never delivers them. Undo what they did there
    /// (the prerequisite keeps its state instead of taking it again, as the
    /// other groups' deliveries are decided on it).
    case forgetDeliveries(TopicPattern, [MessageID])
    /// The publish reached its level at this node (fifo/total: delivered in
    /// order; safe: delivered and held by every member).
    case publishAcked(token: UInt64, id: PublishID, level: DeliveryLevel)
    case publishRefused(token: UInt64, PublishRefusal)
    case publishFailed(token: UInt64, id: PublishID, PublishFailure)
    /// Call `onTick` again no later than this.
    case setTimer(at: Tick)
    /// Write this to stable storage before carrying out the effects that
    /// follow (StandIn.swift); give it back to `GroupNode.init(restoring:)`
    /// after a restart.
    case persistAcceptor(AcceptorState)
    /// A message from `from` was dropped before the core acted on it
    /// (Validation.swift): count it, log it.
    case rejectedMessage(from: ProcessID, RejectReason)
}
