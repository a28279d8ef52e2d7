import PiglixTopics

// The node's state, grouped by lifetime so that a reset happens by
// construction (a new value replaces the old one) and a pair that the
// protocol never allows cannot be written down:
//
// - `GroupNode` itself holds what lives as long as the process: its
//   settings and name, seeds, clock, effect buffer, the highest epoch seen
//   (ballots keep growing across incarnations), publish and ticket counters
//   (an id or a checkpoint ticket is never reused, so a late answer for an
//   old incarnation cannot be taken for a new one), the application's
//   subscriptions (`wanted`, joined again in every view and incarnation),
//   and the publish pipeline (`pending`, `inflight`: emptied by
//   `failAllPublishes`, which must report every publish, not replaced).
// - `Incarnation` holds what one incarnation builds up across its views:
//   the group table, local groups and transfers, checkpoint tickets and
//   requests, joiners waiting for admission, messages of a future view.
//   `rejoin()` replaces it wholesale.
// - `Phase.member(Member)` holds what belongs to the current view: its
//   install, suspicions, flush and the handler's sequencer/ack batch.
//   `installView` builds a new `Member`; leaving the view drops it.
// - The view's message log (`GroupNode.vlog`) belongs with `Member` but is
//   stored beside `phase`: the per-message handlers mutate it many times,
//   and reaching it through the enum payload made them 5–10 % slower
//   (`piglix-sim bench`). There is no flag for it: `installView` writes a
//   new log together with the new `Member`, and `log` is nil unless
//   `phase` is `.member`.
// - `FlushState` (inside `Member`) is this process's part in the view's
//   change: none, reported (a Paxos promise and the frozen digest), or
//   reported and coordinating.

/// The node's phase, carrying what only that phase has.
enum Phase: Sendable {
    /// Created, not started.
    case idle
    /// Asking seeds for admission (not in any view).
    case joining
    /// In a view.
    case member(MemberBox)
    /// Left the cluster for good.
    case left
    /// Transient, never observed outside `GroupNode.member`'s `_modify`:
    /// the payload is out of the enum while it is mutated in place, so
    /// its arrays stay uniquely referenced (swift-nio's state machines).
    case modifying

    var name: String {
        switch self {
        case .idle: "idle"
        case .joining: "joining"
        case .member: "member"
        case .left: "left"
        case .modifying: "modifying"
        }
    }
}

/// The payload of `Phase.member`: one reference, so the phase moves and
/// matches as a pointer instead of a copy of the member state. Copy on write:
/// `GroupNode.member` copies the box before mutating it when a copy of the
/// `GroupNode` shares it, so `GroupNode` keeps value semantics.
/// Its storage is a `ManagedBuffer` header, which is addressed directly:
/// no dynamic exclusivity check per access, as a class property would have.
struct MemberBox: @unchecked Sendable {
    // Sendable: the buffer is only mutated through `GroupNode.member`,
    // when uniquely referenced (copy on write), like an Array's storage.
    var buffer: ManagedBuffer<Member, Void>

    init(_ value: Member) {
        buffer = .create(minimumCapacity: 0) { _ in value }
    }

    /// Through the header's address: `buffer.header` is a class's stored
    /// property, checked for exclusive access at run time on every use. The
    /// pointer is only used while `buffer` (held by `self`) keeps it alive.
    var value: Member {
        _read { yield header.pointee }
        nonmutating _modify { yield &header.pointee }
    }

    @inline(__always)
    private var header: UnsafeMutablePointer<Member> {
        buffer.withUnsafeMutablePointerToHeader { $0 }
    }
}

/// What exists while this process is a member of a view and ends with it
/// (with the view's log, `GroupNode.vlog`).
struct Member: Sendable {
    /// The install that made this view, sent again to members that missed it.
    let install: Install
    var suspects: Set<ProcessID> = []
    /// The unsuspected members are a minority: no publishing (primary lost).
    var blocked = false
    var flush: FlushState = .none
    var nextHeartbeatAt: Tick
    /// Sequencer: entries ordered in this handler, sent at its end as one
    /// `.order` (`newEntriesFirst` is the index of the first).
    var newEntriesFirst: UInt64 = 0
    var newEntries: [OrderEntry] = []
    /// An ack to the sequencer (or, at the sequencer, a stability pass) is
    /// due at the end of the handler.
    var ackDirty = false
    /// A new stable digest is to be broadcast at the end of the handler.
    var stableDirty = false

    init(install: Install, now: Tick) {
        self.install = install
        self.nextHeartbeatAt = now
    }

    /// Sequencer: batches `entry`, the order's entry number `index`.
    mutating func batch(_ entry: OrderEntry, index: UInt64) {
        if newEntries.isEmpty { newEntriesFirst = index }
        newEntries.append(entry)
    }
}

/// What one incarnation of this process builds up across its views.
/// `rejoin()` replaces it: a new incarnation starts with none of it.
struct Incarnation: Sendable {
    /// Processes asking to join, admitted by the next view change this
    /// process coordinates.
    var joiners: [ProcessID] = []
    /// Messages of a later view, replayed after its install (bounded).
    var future = Ring<(ProcessID, ProtocolMessage)>()

    // Groups and state transfer (Groups.swift, StateTransfer.swift)
    var groups = GroupTable()
    var local: [TopicPattern: LocalGroup] = [:]
    var trie: PatternTrie<TopicPattern>
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
    /// for that pattern. Kept for two view changes (`GroupNode.skipAge`).
    var skip: [TopicPattern: Set<PublishID>] = [:]
    /// Checkpoints asked of the application, by ticket.
    var tickets: [UInt64: Ticket] = [:]
    /// Checkpoint requests waiting for this provider to reach their position.
    var deferred: [DeferredRequest] = []

    init(settings: GroupSettings) {
        self.trie = PatternTrie(cacheCapacity: settings.matchCacheCapacity)
    }
}

extension GroupNode {
    /// The current view's state. Only while `phase` is `.member` (checked).
    /// Mutation goes through `_modify`, which moves the box out and parks
    /// the phase on `.modifying`, so the box is uniquely referenced and its
    /// contents are mutated in place, with no copy-on-write copy.
    var member: Member {
        _read {
            guard case .member(let box) = phase else { preconditionFailure("\(me) is not a member: \(phase.name)") }
            yield box.value
        }
        _modify {
            var taken = Phase.modifying
            swap(&taken, &phase)
            guard case .member(var box) = consume taken else { preconditionFailure("\(me) is not a member") }
            if !isKnownUniquelyReferenced(&box.buffer) { box = MemberBox(box.value) }
            defer { phase = .member(box) }
            yield &box.value
        }
    }

    /// The current view's log, or nil outside a view.
    var log: ViewLog? { inView ? vlog : nil }

    var inView: Bool {
        if case .member = phase { return true }
        return false
    }

    /// The install of the current view, or nil outside a view.
    var lastInstall: Install? {
        if case .member(let box) = phase { return box.value.install }
        return nil
    }

    /// The flush this process coordinates in its current view, if any.
    var coordinator: CoordinatorFlush? {
        if case .member(let box) = phase { return box.value.flush.coordinator }
        return nil
    }

    /// Reported to a flush of the current view: no sending, no delivering.
    var flushing: Bool {
        if case .member(let box) = phase { return box.value.flush.isFlushing }
        return false
    }
}
