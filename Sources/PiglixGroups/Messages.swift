import PiglixTopics

/// What a data message carries: an application publish, or a lightweight
/// group join or leave (ordered like a `total` message, so every node applies
/// group membership changes at the same point of the stream).
public enum DataKind: Hashable, Sendable {
    case publish(Destination)
    case groupJoin(TopicPattern)
    case groupLeave(TopicPattern)
    /// The sender finished the state transfer of the group: it may now
    /// serve checkpoints to later joiners.
    case groupReady(TopicPattern)
}

/// A lightweight group in the install's group table: members in join order
/// and whether each has completed its state transfer.
public struct GroupRecord: Hashable, Sendable {
    public var pattern: TopicPattern
    public var members: [ProcessID]
    public var ready: [Bool]
    /// The group's view id: the number the group table gave this member
    /// list when it last changed (`GroupTable`, `GroupViewID`).
    public var view: UInt64
    public init(pattern: TopicPattern, members: [ProcessID], ready: [Bool], view: UInt64) {
        self.pattern = pattern
        self.members = members
        self.ready = ready
        self.view = view
    }
}

/// A multicast. Sent by its origin directly to every member of the view
/// (Spread-style: every node of the view receives every message and filters
/// by its local groups at delivery; deviation from Isis, which sends to the
/// group's members only, traded for a flush that needs no per-group state).
public struct DataMessage: Hashable, Sendable {
    /// The fields live in one immutable, shared box: a message is copied
    /// into every send, delivery and buffer, and a copy is one retain
    /// instead of ~130 bytes (the hot path of the fifo benchmark).
    private final class Storage: Sendable {
        let id: MessageID
        let publish: PublishID
        let session: UInt64
        let level: DeliveryLevel
        let kind: DataKind
        let payload: [UInt8]
        init(id: MessageID, publish: PublishID, session: UInt64, level: DeliveryLevel, kind: DataKind, payload: [UInt8]) {
            self.id = id
            self.publish = publish
            self.session = session
            self.level = level
            self.kind = kind
            self.payload = payload
        }
    }
    private let storage: Storage

    public var id: MessageID { storage.id }
    public var publish: PublishID { storage.publish }
    public var session: UInt64 { storage.session }
    public var level: DeliveryLevel { storage.level }
    public var kind: DataKind { storage.kind }
    public var payload: [UInt8] { storage.payload }

    public init(id: MessageID, publish: PublishID, session: UInt64, level: DeliveryLevel, kind: DataKind, payload: [UInt8]) {
        storage = Storage(id: id, publish: publish, session: session, level: level, kind: kind, payload: payload)
    }

    public static func == (a: DataMessage, b: DataMessage) -> Bool {
        a.storage === b.storage
            || (a.id == b.id && a.publish == b.publish && a.session == b.session && a.level == b.level && a.kind == b.kind
                && a.payload == b.payload)
    }
    public func hash(into h: inout Hasher) {
        h.combine(id)
        h.combine(publish)
    }
}

/// One slot of the total order: the sequencer's `index`-th ordered message
/// is `origin`'s message `seq`.
public struct OrderEntry: Hashable, Sendable {
    public var origin: UInt32
    public var seq: UInt64
    public init(origin: UInt32, seq: UInt64) {
        self.origin = origin
        self.seq = seq
    }
}

/// What a member holds in a view: per origin rank, the length of the
/// contiguous prefix of that origin's stream it has received, and how many
/// total-order entries it knows. Piggybacked on heartbeats and acks.
public struct Digest: Hashable, Sendable {
    public var received: [UInt64]
    public var ordersKnown: UInt64
    public init(received: [UInt64], ordersKnown: UInt64) {
        self.received = received
        self.ordersKnown = ordersKnown
    }
}

/// The protocol's messages between nodes. Plain value types so a transport
/// can encode them; every message names the view it belongs to.
public enum ProtocolMessage: Hashable, Sendable {
    /// A multicast, origin to every member.
    case data(DataMessage)
    /// Sequencer to every member: entries `first`, `first+1`, … of the total
    /// order of `view` (fixed-sequencer "UB" variant: Kaashoek's Amoeba
    /// broadcast, Défago et al. 2004 §4.1).
    case order(view: ViewID, first: UInt64, entries: [OrderEntry])
    /// Member to coordinator: what it holds (eager, after a `safe` message).
    indirect case ack(view: ViewID, digest: Digest)
    /// Coordinator to every member: the minimum over all members of what
    /// they hold. Messages covered are stable: delivered `safe` ones may be
    /// acknowledged and any delivered one garbage-collected.
    indirect case stable(view: ViewID, digest: Digest)
    /// Liveness plus the sender's digest; the coordinator's also carries the
    /// stable digest. `sent` is the sender's own stream length, so a
    /// receiver notices a lost tail and asks again.
    indirect case heartbeat(view: ViewID, digest: Digest, stable: Digest?)
    /// Receiver to origin: resend your stream from `from` (a link was cut).
    case nak(view: ViewID, from: UInt64)
    /// Receiver to sequencer: resend order entries from `from`.
    case orderNak(view: ViewID, from: UInt64)
    /// A joining process asks to be added to the primary view.
    case joinRequest(ProcessID)
    /// Coordinator to survivors: stop sending in `previous`, report what you
    /// hold. `proposal.id` is the ballot.
    indirect case flushStart(previous: ViewID, proposal: ClusterView)
    /// Survivor to coordinator.
    indirect case flushReport(FlushReport)
    /// Survivor to a coordinator whose ballot is below one it promised: try
    /// again above `promised` (the promised coordinator may have failed).
    case flushReject(previous: ViewID, promised: ViewID)
    /// Coordinator to survivors, once all reported: accept this install
    /// under `ballot` (Paxos phase 2; the install is the value).
    indirect case propose(ballot: ViewID, Install)
    /// Survivor to coordinator: accepted the proposal of `ballot`.
    case accepted(ballot: ViewID)
    /// A restarted node to a coordinator: its promise for its old seat in
    /// `previous` (StandIn.swift), with what that seat accepted.
    indirect case standInPromise(previous: ViewID, ballot: ViewID, accepted: Install?, acceptedBallot: ViewID?)
    /// Coordinator to every member of the new view, once a majority of the
    /// old view accepted (the commit): deliver up to the cut,
    /// then install the view.
    indirect case install(Install)
    /// A member that heard of a newer view asks a member of it for it.
    case installRequest(view: ViewID)
    /// "Your view is stale; mine is this." A process not in it rejoins.
    indirect case viewNotice(ClusterView)
    /// Joiner to provider: send me a checkpoint of `pattern` at a position
    /// at or after `after`. `request` names this attempt; its chunks echo it.
    indirect case checkpointRequest(pattern: TopicPattern, after: StreamPosition, request: UInt64)
    /// Provider to joiner: one chunk of the application state at a cut.
    indirect case checkpointChunk(CheckpointChunk)
    /// Joiner to provider: chunk `index` of `request` is applied; the
    /// provider may send more (at most `transferWindowChunks` unacked).
    indirect case checkpointAck(pattern: TopicPattern, request: UInt64, index: UInt32)
}

/// One chunk of a checkpoint (StateTransfer.swift). A checkpoint travels as
/// chunks of the application's size, never as one message, so its size is
/// bounded by retention, not by the frame limit.
public struct CheckpointChunk: Hashable, Sendable {
    public var pattern: TopicPattern
    /// The joiner's request id.
    public var request: UInt64
    /// From 0, in order. Chunk 0 resets the joiner's state for the pattern.
    public var index: UInt32
    /// Where the checkpoint was taken; the same in every chunk of a request.
    /// Nil only for the empty state a group's first member starts from
    /// (never sent).
    public var cut: StreamPosition?
    /// Chunk 0 only: re-sends the provider will not deliver to the group
    /// because the state already holds them (a `safe` message a checkpoint
    /// took before a flush left it out); the joiner skips them too (seed 18533).
    public var skip: [PublishID]
    /// Application bytes; the application decides how its state splits.
    public var state: [UInt8]
    public var last: Bool

    public var isFirst: Bool { index == 0 }

    public init(pattern: TopicPattern, request: UInt64, index: UInt32, cut: StreamPosition?, skip: [PublishID], state: [UInt8], last: Bool) {
        self.pattern = pattern
        self.request = request
        self.index = index
        self.cut = cut
        self.skip = skip
        self.state = state
        self.last = last
    }
}

/// A survivor's answer to a flush start (the "what I hold" step of the
/// Isis/Horus flush). Carries every message and order entry it holds that is
/// not known stable, so the coordinator can hand each survivor what it lacks
/// without a further round.
public struct FlushReport: Hashable, Sendable {
    public var previous: ViewID
    public var ballot: ViewID
    public var digest: Digest
    /// The stable digest this member knows (a `safe` message it delivered is
    /// covered by it).
    public var knownStable: Digest
    public var messages: [DataMessage]
    /// Order entries from index `ordersFirst` on.
    public var ordersFirst: UInt64
    public var orders: [OrderEntry]
    /// Per origin: how many messages this member delivered, and below which
    /// it garbage-collected.
    public var delivered: [UInt64]
    public var floors: [UInt64]
    public var totalDelivered: UInt64
    /// The install this member accepted under the highest ballot, if any: a
    /// new coordinator must propose it again (it may have been committed).
    public var accepted: Install?
    public var acceptedBallot: ViewID?
    /// The groups this member has completed its state transfer for. Its
    /// `groupReady` may still be beyond the cut; the install marks it ready
    /// at the cut, so a joiner does not take an empty state while this
    /// member holds the group's history (seed 6801).
    public var activeGroups: [TopicPattern]
    public init(previous: ViewID, ballot: ViewID, digest: Digest, knownStable: Digest, messages: [DataMessage], ordersFirst: UInt64, orders: [OrderEntry], delivered: [UInt64], floors: [UInt64], totalDelivered: UInt64, accepted: Install?, acceptedBallot: ViewID?, activeGroups: [TopicPattern] = []) {
        self.activeGroups = activeGroups
        self.accepted = accepted
        self.acceptedBallot = acceptedBallot
        self.previous = previous
        self.ballot = ballot
        self.digest = digest
        self.knownStable = knownStable
        self.messages = messages
        self.ordersFirst = ordersFirst
        self.orders = orders
        self.delivered = delivered
        self.floors = floors
        self.totalDelivered = totalDelivered
    }
}

/// The end of a flush: the same value goes to every member of the new view,
/// so any member can forward it to one that missed it.
public struct Install: Hashable, Sendable {
    /// The view being closed (nil when a node bootstraps the first view).
    public var previous: ViewID?
    public var view: ClusterView
    /// Per origin rank of `previous`: deliver exactly this prefix.
    public var cut: [UInt64]
    /// Deliver the total order up to this entry.
    public var ordersCut: UInt64
    /// Messages above the lowest survivor's holdings, up to the cut.
    public var messages: [DataMessage]
    public var ordersFirst: UInt64
    public var orders: [OrderEntry]
    /// Group table after the cut, before the membership change is applied;
    /// a joining process adopts it.
    public var groups: [GroupRecord]
    /// Members marked ready at the cut, from the survivors' reports
    /// (`FlushReport.activeGroups`), in survivor order.
    public var readyAtCut: [GroupMember]
    public init(
        previous: ViewID?, view: ClusterView, cut: [UInt64], ordersCut: UInt64, messages: [DataMessage], ordersFirst: UInt64,
        orders: [OrderEntry], groups: [GroupRecord], readyAtCut: [GroupMember] = []
    ) {
        self.readyAtCut = readyAtCut
        self.previous = previous
        self.view = view
        self.cut = cut
        self.ordersCut = ordersCut
        self.messages = messages
        self.ordersFirst = ordersFirst
        self.orders = orders
        self.groups = groups
    }
}

/// A member of a group: which process, in which pattern's group.
public struct GroupMember: Hashable, Sendable {
    public var pattern: TopicPattern
    public var member: ProcessID
    public init(pattern: TopicPattern, member: ProcessID) {
        self.pattern = pattern
        self.member = member
    }
}
