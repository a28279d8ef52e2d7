import PiglixTopics

/// Every timing and every bound of the core, built once and validated
/// (raft `Config.validate()`, TigerBeetle's "put a limit on everything").
/// Times are in ticks; the shell chooses the tick length.
public struct GroupSettings: Hashable, Sendable {
    /// A member sends a heartbeat to every other member this often.
    public var heartbeatIntervalTicks: Tick = 10
    /// A member silent this long is suspected. Must exceed a few heartbeats.
    public var suspicionTimeoutTicks: Tick = 60
    /// A joining node repeats its join request to its seeds this often.
    public var joinRetryTicks: Tick = 25
    /// A coordinator repeats its flush start to members that have not
    /// reported yet this often (a report lost on a cut link).
    public var flushRetryTicks: Tick = 30
    /// A receiver that sees a gap in an origin's stream asks again no sooner.
    public var nakRetryTicks: Tick = 10
    /// A joiner asks its state-transfer provider again this often.
    public var transferRetryTicks: Tick = 120
    /// Most own messages sent but not yet stable (held by every member).
    /// Flow control: beyond it publishes wait in the pending queue.
    public var unstableMessagesMax: Int = 8192
    /// Most payload bytes of own unstable messages.
    public var unstableBytesMax: Int = 32 << 20
    /// A member that received this many messages since its last ack acks
    /// at once instead of waiting for its next heartbeat, so `fifo` and
    /// `total` traffic becomes stable (and leaves the senders' unstable
    /// windows) at the rate it arrives. Keep it well below
    /// `unstableMessagesMax`.
    public var ackEveryMessages: Int = 1024
    /// Most publishes waiting to be sent (during a flush, or while the
    /// unstable window is full). Beyond it a publish is refused.
    public var pendingPublishesMax: Int = 8192
    /// Most payload bytes waiting to be sent.
    public var pendingBytesMax: Int = 32 << 20
    /// Most messages of a view not yet installed kept for later (they arrive
    /// before the install). Beyond it they are dropped and recovered by NAK.
    public var futureMessagesMax: Int = 65_536
    /// Most messages a joiner buffers for a group while it waits for the
    /// checkpoint. Beyond it the state transfer starts over.
    public var transferBufferMax: Int = 65_536
    /// Checkpoint chunks a provider sends ahead of the joiner's acks: bounds
    /// the provider's unsent bytes and the joiner's unapplied ones (each
    /// chunk is the application's size: `ClusterSettings.checkpointChunkBytes`).
    public var transferWindowChunks: Int = 4
    /// Entries in the topic-match cache of the local group trie.
    public var matchCacheCapacity: Int = 1024
    /// Emit `.deliver` for messages no local group matches too (empty group
    /// list). The simulator turns this on to check P3 on the whole stream;
    /// a broker can use it to advance resume positions.
    public var deliverUnmatched: Bool = false
    /// A group every other local group waits for: while it is not active
    /// on this node (its state transfer not complete), the joins of other
    /// groups are held back, and sent once it is. The broker names its
    /// `$piglix.idempotence` group: the other groups' idempotent deliveries
    /// are decided on that group's state, which must be complete before
    /// any of them is buffered or delivered (docs/patterns.md).
    public var prerequisiteGroup: TopicPattern? = nil
    /// Groups whose application state depends on the order of its
    /// deliveries, not only on their set (the broker's work queue table:
    /// its round robin counts messages in the agreed order). A member of
    /// one whose checkpoint held a message that a flush then cut (its
    /// provider delivered it and was excluded) takes the state again from
    /// a survivor (`GroupEffect.transferRestarted`) instead of skipping the
    /// message's re-send, which would leave it at the provider's place in
    /// the order, not the primary's (docs/virtual-synchrony.md). Any group
    /// but `prerequisiteGroup` does so too when the message's origin was
    /// excluded (no re-send will come).
    public var orderedStateGroups: Set<TopicPattern> = []

    public init() {}

    /// Why a setting was rejected.
    public enum Invalid: Error, Hashable, Sendable, CustomStringConvertible {
        case notPositive(name: String)
        case tooSmall(name: String, value: UInt64, minimum: UInt64, reason: String)
        public var description: String {
            switch self {
            case .notPositive(let name): "\(name) must be positive"
            case .tooSmall(let name, let value, let minimum, let reason):
                "\(name) is \(value), it must be at least \(minimum): \(reason)"
            }
        }
    }

    public func validate() throws(Invalid) {
        let ticks: [(String, Tick)] = [
            ("heartbeatIntervalTicks", heartbeatIntervalTicks), ("suspicionTimeoutTicks", suspicionTimeoutTicks),
            ("joinRetryTicks", joinRetryTicks), ("flushRetryTicks", flushRetryTicks),
            ("nakRetryTicks", nakRetryTicks), ("transferRetryTicks", transferRetryTicks),
        ]
        for (name, value) in ticks where value == 0 { throw .notPositive(name: name) }
        let counts: [(String, Int)] = [
            ("unstableMessagesMax", unstableMessagesMax), ("unstableBytesMax", unstableBytesMax),
            ("pendingPublishesMax", pendingPublishesMax), ("pendingBytesMax", pendingBytesMax),
            ("futureMessagesMax", futureMessagesMax), ("transferBufferMax", transferBufferMax),
            ("ackEveryMessages", ackEveryMessages), ("transferWindowChunks", transferWindowChunks),
        ]
        for (name, value) in counts where value <= 0 { throw .notPositive(name: name) }
        if matchCacheCapacity < 0 { throw .notPositive(name: "matchCacheCapacity") }
        if suspicionTimeoutTicks < 3 * heartbeatIntervalTicks {
            throw .tooSmall(
                name: "suspicionTimeoutTicks", value: suspicionTimeoutTicks, minimum: 3 * heartbeatIntervalTicks,
                reason: "a member must miss at least three heartbeats before it is suspected")
        }
    }
}
