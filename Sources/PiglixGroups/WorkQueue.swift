import PiglixTopics

/// Coordinator/cohort work queues (docs/patterns.md, "Work queues"): which
/// member of a queue holds which message, decided by every node alike.
///
/// A pure value, like `IdempotenceTable`: every node keeps one and feeds it
/// the same inputs in the agreed order (Isis's coordinator/cohort tool,
/// Birman, *Reliable Distributed Systems* §16: the choice is a function of
/// the group view and the message's place in the total order, so no extra
/// message elects a coordinator):
///
/// - `join` / `leave`: a member's join or leave record, delivered `total`;
/// - `deliver`: a `total`/`safe` message whose topic may match queues;
/// - `ack`: an ack record, delivered `total`;
/// - `viewInstalled`: a cluster view (members of dead processes leave).
///
/// Each returns the effects for every node; a node acts on those naming its
/// own members. The same table, fed the same inputs, returns the same
/// effects everywhere. No dictionary order reaches an effect.
public struct QueueLimits: Hashable, Sendable {
    /// Queues in the table; a join that would create one more is refused.
    public var queuesMax: Int = 1024
    /// Members of one queue; one more join is refused.
    public var membersPerQueueMax: Int = 1024
    /// Messages a queue holds unacked (assigned or in its backlog); a
    /// message past it is not taken by the queue (`overflow`).
    public var unackedPerQueueMax: Int = 10_000
    /// Messages one member holds unacked; past it new messages go to the
    /// next member with room, or wait in the queue's backlog.
    public var inFlightPerMemberMax: Int = 256

    public init(queuesMax: Int = 1024, membersPerQueueMax: Int = 1024, unackedPerQueueMax: Int = 10_000, inFlightPerMemberMax: Int = 256) {
        self.queuesMax = queuesMax
        self.membersPerQueueMax = membersPerQueueMax
        self.unackedPerQueueMax = unackedPerQueueMax
        self.inFlightPerMemberMax = inFlightPerMemberMax
    }

    public static let `default` = QueueLimits()

    /// A name for the first limit below 1, nil when all are usable.
    public var invalid: String? {
        if queuesMax < 1 { return "queuesMax" }
        if membersPerQueueMax < 1 { return "membersPerQueueMax" }
        if unackedPerQueueMax < 1 { return "unackedPerQueueMax" }
        if inFlightPerMemberMax < 1 { return "inFlightPerMemberMax" }
        return nil
    }
}

/// A queue message's identity, the same on every node: in a cluster the
/// protocol identity of the message (view, origin rank, sequence); on a
/// single node `(0, 0, node sequence)`.
public struct QueueMessageKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var view: UInt64
    public var origin: UInt32
    public var seq: UInt64
    public init(view: UInt64, origin: UInt32, seq: UInt64) {
        self.view = view
        self.origin = origin
        self.seq = seq
    }
    public static func < (a: Self, b: Self) -> Bool { (a.view, a.origin, a.seq) < (b.view, b.origin, b.seq) }
    public var description: String { "\(view)/\(origin).\(seq)" }
}

/// One member of a queue: a subscription (`local`, unique on its process)
/// of a process. It is alive while its process is in the cluster view and
/// it has not left.
public struct QueueMember: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var process: ProcessID
    public var local: UInt64
    public init(process: ProcessID, local: UInt64) {
        self.process = process
        self.local = local
    }
    public static func < (a: Self, b: Self) -> Bool { (a.process, a.local) < (b.process, b.local) }
    public var description: String { "\(process)/\(local)" }
}

/// What a table input makes happen.
public enum QueueEffect<Payload: Sendable>: Sendable {
    /// `member` now holds the message: send it (`redelivered`: an earlier
    /// holder left or failed before acking it).
    case assign(queue: String, member: QueueMember, key: QueueMessageKey, payload: Payload, redelivered: Bool)
    /// The join was refused; the member's stream ends with `reason`.
    case refuseJoin(queue: String, member: QueueMember, reason: String)
    /// The queue held `unackedPerQueueMax` messages: this one is not queued.
    case overflow(queue: String, key: QueueMessageKey)
}

/// An ack's answer per id.
public enum QueueAckResult: Hashable, Sendable {
    case acked
    /// Not unacked in this queue: never queued, or acked already.
    case unknown
}

public struct QueueTable<Payload: Sendable>: Sendable {
    public let limits: QueueLimits

    /// One unacked message.
    public struct Entry: Sendable {
        public var key: QueueMessageKey
        public var payload: Payload
        /// The member it is assigned to; nil while it waits in the backlog.
        public var holder: QueueMember?
        /// Times it was assigned (1 after the first; more: redelivered).
        public var assignments: UInt32
        public init(key: QueueMessageKey, payload: Payload, holder: QueueMember?, assignments: UInt32) {
            self.key = key
            self.payload = payload
            self.holder = holder
            self.assignments = assignments
        }
    }

    /// A queue's whole state, in a canonical order (checkpoints, tests).
    public struct QueueState: Sendable {
        public var name: String
        public var pattern: TopicPattern
        /// Live members, oldest join first: the queue's view.
        public var members: [QueueMember]
        /// Messages assigned so far: the rotation's position.
        public var counter: UInt64
        /// Unacked messages, by key.
        public var entries: [Entry]
        /// Keys waiting for a member with room, in order.
        public var backlog: [QueueMessageKey]
        public init(
            name: String, pattern: TopicPattern, members: [QueueMember], counter: UInt64, entries: [Entry], backlog: [QueueMessageKey]
        ) {
            self.name = name
            self.pattern = pattern
            self.members = members
            self.counter = counter
            self.entries = entries
            self.backlog = backlog
        }
    }

    struct Queue: Sendable {
        var pattern: TopicPattern
        var members: [QueueMember] = []
        var counter: UInt64 = 0
        var entries: [QueueMessageKey: Entry] = [:]
        /// Keys each member holds, in key order.
        var held: [QueueMember: [QueueMessageKey]] = [:]
        var backlog: [QueueMessageKey] = []
        var backlogStart = 0

        var backlogCount: Int { backlog.count - backlogStart }
    }

    var queues: [String: Queue] = [:]
    /// Queue names, sorted: the order effects are produced in.
    var names: [String] = []

    public init(limits: QueueLimits = .default) {
        self.limits = limits
    }

    /// Rebuilds a table from `snapshot()`.
    public init(limits: QueueLimits, restoring states: [QueueState]) {
        self.limits = limits
        for s in states {
            var q = Queue(pattern: s.pattern, members: s.members, counter: s.counter)
            for e in s.entries {
                q.entries[e.key] = e
                if let h = e.holder { q.held[h, default: []].append(e.key) }
            }
            for h in q.held.keys { q.held[h]!.sort() }
            q.backlog = s.backlog
            queues[s.name] = q
        }
        names = queues.keys.sorted()
    }

    // MARK: Reading

    public var isEmpty: Bool { queues.isEmpty }
    public var queueCount: Int { queues.count }
    public var queueNames: [String] { names }

    public func pattern(of queue: String) -> TopicPattern? { queues[queue]?.pattern }
    /// The queues' patterns, in name order (duplicates kept).
    public var patterns: [TopicPattern] { names.map { queues[$0]!.pattern } }
    public func members(of queue: String) -> [QueueMember] { queues[queue]?.members ?? [] }
    public func unackedCount(of queue: String) -> Int { queues[queue]?.entries.count ?? 0 }
    public func backlogCount(of queue: String) -> Int { queues[queue]?.backlogCount ?? 0 }
    public func holder(of key: QueueMessageKey, in queue: String) -> QueueMember?? {
        guard let e = queues[queue]?.entries[key] else { return nil }
        return .some(e.holder)
    }
    public func held(by member: QueueMember, in queue: String) -> [QueueMessageKey] { queues[queue]?.held[member] ?? [] }
    public func entry(_ key: QueueMessageKey, in queue: String) -> Entry? { queues[queue]?.entries[key] }

    /// True when some queue's pattern matches `topic` (the entry node then
    /// sends a `fifo` record as `total`).
    public func hasQueue(matching topic: Topic) -> Bool {
        for q in queues.values where q.pattern.matches(topic) { return true }
        return false
    }

    /// The table in a canonical order: equal tables give equal snapshots.
    public func snapshot() -> [QueueState] {
        names.map { name in
            let q = queues[name]!
            return QueueState(
                name: name, pattern: q.pattern, members: q.members, counter: q.counter,
                entries: q.entries.keys.sorted().map { q.entries[$0]! }, backlog: Array(q.backlog[q.backlogStart...]))
        }
    }

    // MARK: Inputs

    /// A member's join record. A new queue is created by its first join;
    /// the queue's pattern is fixed until it is deleted.
    public mutating func join(queue name: String, pattern: TopicPattern, member: QueueMember) -> [QueueEffect<Payload>] {
        var effects: [QueueEffect<Payload>] = []
        if var q = queues[name] {
            if q.members.contains(member) { return effects }
            guard q.pattern == pattern else {
                effects.append(.refuseJoin(queue: name, member: member, reason: "queue \(name) exists on pattern \(q.pattern.name), not \(pattern.name)"))
                return effects
            }
            guard q.members.count < limits.membersPerQueueMax else {
                effects.append(.refuseJoin(queue: name, member: member, reason: "queue \(name) has its limit of \(limits.membersPerQueueMax) members"))
                return effects
            }
            q.members.append(member)
            drainBacklog(name, &q, into: &effects)
            queues[name] = q
        } else {
            guard queues.count < limits.queuesMax else {
                effects.append(.refuseJoin(queue: name, member: member, reason: "the cluster holds its limit of \(limits.queuesMax) queues"))
                return effects
            }
            queues[name] = Queue(pattern: pattern, members: [member])
            names.insert(name, at: names.firstIndex { $0 > name } ?? names.endIndex)
        }
        return effects
    }

    /// A member's leave record (its stream closed): what it held goes to the
    /// next-ranked member, marked redelivered.
    public mutating func leave(queue name: String, member: QueueMember) -> [QueueEffect<Payload>] {
        var effects: [QueueEffect<Payload>] = []
        guard var q = queues[name], q.members.contains(member) else { return effects }
        remove([member], from: name, &q, into: &effects)
        store(name, q)
        return effects
    }

    /// A cluster view: members of processes not in it are gone, and what
    /// they held goes to the next-ranked members.
    public mutating func viewInstalled(_ alive: Set<ProcessID>) -> [QueueEffect<Payload>] {
        var effects: [QueueEffect<Payload>] = []
        for name in names {
            var q = queues[name]!
            let dead = q.members.filter { !alive.contains($0.process) }
            if dead.isEmpty { continue }
            remove(dead, from: name, &q, into: &effects)
            store(name, q)
        }
        return effects
    }

    /// A `total`/`safe` message on `topic`: each queue whose pattern matches
    /// takes it, assigned to its coordinator (or waiting in the backlog).
    public mutating func deliver(key: QueueMessageKey, topic: Topic, payload: Payload) -> [QueueEffect<Payload>] {
        var effects: [QueueEffect<Payload>] = []
        for name in names {
            guard queues[name]!.pattern.matches(topic) else { continue }
            var q = queues[name]!
            if q.entries[key] != nil { continue }
            guard q.entries.count < limits.unackedPerQueueMax else {
                effects.append(.overflow(queue: name, key: key))
                continue
            }
            q.entries[key] = Entry(key: key, payload: payload, holder: nil, assignments: 0)
            if q.backlogCount > 0 || !assign(key, name, &q, start: nil, into: &effects) { q.backlog.append(key) }
            queues[name] = q
        }
        return effects
    }

    /// An ack record: each key unacked in the queue is dropped from it,
    /// whoever holds it (any member, or any client that names the queue).
    public mutating func ack(queue name: String, keys: [QueueMessageKey]) -> (results: [QueueAckResult], effects: [QueueEffect<Payload>]) {
        var effects: [QueueEffect<Payload>] = []
        guard var q = queues[name] else { return (keys.map { _ in .unknown }, effects) }
        var results: [QueueAckResult] = []
        results.reserveCapacity(keys.count)
        for key in keys {
            guard let e = q.entries.removeValue(forKey: key) else {
                results.append(.unknown)
                continue
            }
            results.append(.acked)
            if let h = e.holder {
                q.held[h]?.removeAll { $0 == key }
                if q.held[h]?.isEmpty == true { q.held[h] = nil }
            } else if let i = q.backlog[q.backlogStart...].firstIndex(of: key) {
                q.backlog.remove(at: i)
            }
        }
        drainBacklog(name, &q, into: &effects)
        store(name, q)
        return (results, effects)
    }

    // MARK: Assignment

    /// Stores `q`, or deletes it when it has no member and nothing unacked.
    mutating func store(_ name: String, _ q: Queue) {
        if q.members.isEmpty && q.entries.isEmpty {
            queues[name] = nil
            names.removeAll { $0 == name }
        } else {
            queues[name] = q
        }
    }

    /// Assigns `key` to the first member with room, trying members in rank
    /// order from `start` (nil: the rotation, `counter mod members`).
    /// False when none has room.
    func assign(_ key: QueueMessageKey, _ name: String, _ q: inout Queue, start: Int?, into effects: inout [QueueEffect<Payload>]) -> Bool {
        let n = q.members.count
        guard n > 0 else { return false }
        let first: Int
        if let start {
            first = start % n
        } else {
            first = Int(q.counter % UInt64(n))
            q.counter &+= 1
        }
        for i in 0..<n {
            let m = q.members[(first + i) % n]
            guard (q.held[m]?.count ?? 0) < limits.inFlightPerMemberMax else { continue }
            var e = q.entries[key]!
            e.holder = m
            e.assignments += 1
            q.entries[key] = e
            var held = q.held[m] ?? []
            held.insert(key, at: held.firstIndex { $0 > key } ?? held.endIndex)
            q.held[m] = held
            effects.append(.assign(queue: name, member: m, key: key, payload: e.payload, redelivered: e.assignments > 1))
            return true
        }
        return false
    }

    /// Assigns backlog keys, oldest first, while some member has room.
    func drainBacklog(_ name: String, _ q: inout Queue, into effects: inout [QueueEffect<Payload>]) {
        while q.backlogCount > 0 {
            let key = q.backlog[q.backlogStart]
            guard assign(key, name, &q, start: nil, into: &effects) else { break }
            q.backlogStart += 1
        }
        if q.backlogStart > 0 && q.backlogStart * 2 >= q.backlog.count {
            q.backlog.removeFirst(q.backlogStart)
            q.backlogStart = 0
        }
    }

    /// Removes `gone` members; each one's messages, in key order, go to its
    /// next-ranked surviving member with room (its successor in join
    /// order, cyclically), else to the front of the backlog.
    func remove(_ gone: [QueueMember], from name: String, _ q: inout Queue, into effects: inout [QueueEffect<Payload>]) {
        let old = q.members
        let goneSet = Set(gone)
        q.members.removeAll { goneSet.contains($0) }
        var orphans: [QueueMessageKey] = []
        for member in old where goneSet.contains(member) {
            let keys = q.held.removeValue(forKey: member) ?? []
            guard !keys.isEmpty else { continue }
            // The successor's index among the survivors: the survivors ranked
            // before `member` in the old list.
            let r = old.firstIndex(of: member)!
            let before = old[..<r].filter { !goneSet.contains($0) }.count
            for key in keys {
                q.entries[key]!.holder = nil
                if !assign(key, name, &q, start: before, into: &effects) { orphans.append(key) }
            }
        }
        if !orphans.isEmpty {
            // Redeliveries go ahead of messages never assigned.
            q.backlog = orphans + q.backlog[q.backlogStart...]
            q.backlogStart = 0
        }
        drainBacklog(name, &q, into: &effects)
    }
}
