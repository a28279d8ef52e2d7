/// Locks (docs/patterns.md, "Locks"): who holds each named lock, who waits
/// for it in which order, and the next fencing token.
///
/// A pure value, like `IdempotenceTable`: every node keeps one and feeds it
/// the same events in the same order — lock operations delivered in the
/// agreed (`total`) order of the internal group `$piglix.locks`, and that
/// group's view changes, which the core emits in order with the deliveries
/// (a view change follows the flush, so every survivor delivered the same
/// operations before it, P3). So every node holds the same table and makes
/// the same grants with the same tokens (the "state machine" use of a
/// process group: Birman, "The process group approach to reliable
/// distributed computing", 1993, §4 on replicated data and locking).
///
/// A request is named by its owner (the requesting process, `node/incarnation`)
/// and a number the owner chose; the table never looks at the clock.
public struct LockRequest: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The requesting process: `node/incarnation`. Its requests are dropped
    /// when a view of the lock group without it is installed.
    public var owner: String
    /// Unique per owner.
    public var id: UInt64
    public init(owner: String, id: UInt64) {
        self.owner = owner
        self.id = id
    }
    public static func < (a: Self, b: Self) -> Bool { (a.owner, a.id) < (b.owner, b.id) }
    public var description: String { "\(owner)#\(id)" }
}

/// The table's bounds. Decided at delivery, so every node of a cluster must
/// run with the same values (they are part of the replicated state machine).
public struct LockLimits: Hashable, Sendable {
    /// Locks that exist at once (held or waited for) in the cluster; a
    /// request for another lock is refused.
    public var locksMax: Int = 10_000
    /// Requests queued behind one lock's holder; one more is refused.
    public var waitersMax: Int = 1_000
    public init(locksMax: Int = 10_000, waitersMax: Int = 1_000) {
        self.locksMax = locksMax
        self.waitersMax = waitersMax
    }
    public static let `default` = LockLimits()
}

/// One lock operation, multicast in total order on `$piglix.locks`.
public enum LockOperation: Hashable, Sendable {
    /// Queue `request` for `lock` (granted at once if the lock is free).
    case request(lock: String, LockRequest)
    /// The request's stream closed: release it if it holds the lock, else
    /// take it out of the queue.
    case release(lock: String, LockRequest)
    /// `DELETE /v1/locks/{name}?token=N`: release the lock if `token` is the
    /// current holder's.
    case releaseToken(lock: String, token: UInt64)
}

/// What an event did to one request; the node that owns the request tells
/// its client.
public enum LockEvent: Hashable, Sendable {
    /// The request holds the lock now, with this fencing token.
    case granted(lock: String, LockRequest, token: UInt64)
    /// The request waits; `position` 1 is next in line. Emitted when the
    /// request is queued and whenever its position changes.
    case waiting(lock: String, LockRequest, position: Int)
    /// The request held the lock and no longer does (released by its
    /// stream, by token, or its owner left the group's view).
    case released(lock: String, LockRequest, token: UInt64, reason: LockEndReason)
    /// The request was refused (a bound) or dropped from the queue without
    /// being granted.
    case ended(lock: String, LockRequest, reason: LockEndReason)
}

public enum LockEndReason: Hashable, Sendable, CustomStringConvertible {
    /// The owner's stream closed (or the owner cancelled).
    case released
    /// `DELETE` with the holder's token.
    case releasedByToken
    /// The owner's process left the lock group's view.
    case ownerLeft
    /// `locksMax` locks exist already.
    case tooManyLocks(max: Int)
    /// `waitersMax` requests wait for this lock already.
    case tooManyWaiters(max: Int)
    /// The same request was made twice (a broken client of the table).
    case duplicate

    public var description: String {
        switch self {
        case .released: "released"
        case .releasedByToken: "released by DELETE with its token"
        case .ownerLeft: "the requesting node left the cluster view"
        case .tooManyLocks(let max): "the cluster holds \(max) locks already (the locks bound)"
        case .tooManyWaiters(let max): "\(max) requests wait for this lock already (the waiters bound)"
        case .duplicate: "the request was made twice"
        }
    }
}

public struct LockTable: Hashable, Sendable {
    public struct Lock: Hashable, Sendable {
        public var holder: LockRequest?
        /// The holder's fencing token (0 while free).
        public var token: UInt64 = 0
        /// Waiting requests, oldest first.
        public var queue: [LockRequest] = []
        public init(holder: LockRequest? = nil, token: UInt64 = 0, queue: [LockRequest] = []) {
            self.holder = holder
            self.token = token
            self.queue = queue
        }
    }

    public let limits: LockLimits
    /// Locks held or waited for; a lock with neither is removed.
    public private(set) var locks: [String: Lock] = [:]
    /// The token of the next grant: strictly increasing, never reused
    /// (carried by the checkpoint, so across restarts too).
    public private(set) var nextToken: UInt64 = 1
    /// The lock group's last view applied (its id) and its owners; nil
    /// until the first view.
    public private(set) var viewID: UInt64 = 0
    public private(set) var members: Set<String>?

    /// An empty table whose first grant gets `firstToken`. A table that
    /// starts a history (a single node's start, or the lock group started
    /// empty because no member holds the table) starts its tokens from the
    /// wall clock (`LockTable.firstToken(unixMilliseconds:)`), so tokens keep
    /// growing across a restart that lost the table; a joiner's table is
    /// replaced by the checkpoint's anyway.
    public init(limits: LockLimits = .default, firstToken: UInt64 = 1) {
        precondition(limits.locksMax > 0 && limits.waitersMax >= 0, "lock limits must be positive: \(limits)")
        self.limits = limits
        self.nextToken = max(firstToken, 1)
    }

    /// The first token of a table that starts a history at this wall-clock
    /// time: milliseconds since 1970 × 1,000. Above every token of an
    /// earlier history started at least 1 ms before, as long as that
    /// history granted fewer than 1,000 locks per millisecond on average
    /// and the clock did not go back (docs/patterns.md, "Locks").
    public static func firstToken(unixMilliseconds: UInt64) -> UInt64 {
        unixMilliseconds.multipliedReportingOverflow(by: 1000).overflow ? 1 : max(unixMilliseconds * 1000, 1)
    }

    public var lockCount: Int { locks.count }
    public var waiterCount: Int { locks.values.reduce(0) { $0 + $1.queue.count } }

    /// The current holder's request and token.
    public func holder(of lock: String) -> (request: LockRequest, token: UInt64)? {
        guard let l = locks[lock], let h = l.holder else { return nil }
        return (h, l.token)
    }

    /// Applies one delivered operation.
    public mutating func apply(_ operation: LockOperation) -> [LockEvent] {
        switch operation {
        case .request(let lock, let r): return request(lock, r)
        case .release(let lock, let r): return release(lock, r)
        case .releaseToken(let lock, let token): return release(lock, token: token)
        }
    }

    public mutating func request(_ name: String, _ r: LockRequest) -> [LockEvent] {
        var events: [LockEvent] = []
        // A request of a process the group's view no longer holds (it left
        // before its request was delivered): nothing to grant to.
        if let members, !members.contains(r.owner) { return [.ended(lock: name, r, reason: .ownerLeft)] }
        guard var lock = locks[name] else {
            if locks.count >= limits.locksMax { return [.ended(lock: name, r, reason: .tooManyLocks(max: limits.locksMax))] }
            var lock = Lock()
            grant(name, r, &lock, &events)
            locks[name] = lock
            return events
        }
        if lock.holder == r || lock.queue.contains(r) { return [.ended(lock: name, r, reason: .duplicate)] }
        if lock.holder == nil {
            // Cannot happen (a free lock with no waiter is removed), kept total.
            grant(name, r, &lock, &events)
        } else if lock.queue.count >= limits.waitersMax {
            events.append(.ended(lock: name, r, reason: .tooManyWaiters(max: limits.waitersMax)))
        } else {
            lock.queue.append(r)
            events.append(.waiting(lock: name, r, position: lock.queue.count))
        }
        locks[name] = lock
        return events
    }

    public mutating func release(_ name: String, _ r: LockRequest) -> [LockEvent] {
        guard var lock = locks[name] else { return [] }
        var events: [LockEvent] = []
        if lock.holder == r {
            events.append(.released(lock: name, r, token: lock.token, reason: .released))
            passOn(name, &lock, &events)
        } else if let i = lock.queue.firstIndex(of: r) {
            lock.queue.remove(at: i)
            events.append(.ended(lock: name, r, reason: .released))
            renumber(name, lock, from: i, &events)
        } else {
            return []
        }
        store(name, lock)
        return events
    }

    /// Releases `lock` if `token` is its holder's; nothing otherwise (the
    /// entry node refused a stale token with 409 already; one that went
    /// stale in flight is ignored here, the same on every node).
    public mutating func release(_ name: String, token: UInt64) -> [LockEvent] {
        guard var lock = locks[name], let h = lock.holder, lock.token == token else { return [] }
        var events: [LockEvent] = [.released(lock: name, h, token: token, reason: .releasedByToken)]
        passOn(name, &lock, &events)
        store(name, lock)
        return events
    }

    /// The lock group installed view `id` with these owners: every request
    /// of an owner not in it is dropped, and each lock it held passes to its
    /// oldest remaining waiter. A view not newer than the last one applied
    /// is ignored (a joiner replays the views it saw during its transfer).
    public mutating func viewChanged(id: UInt64, members newMembers: Set<String>) -> [LockEvent] {
        guard members == nil || id > viewID else { return [] }
        viewID = id
        members = newMembers
        var events: [LockEvent] = []
        // Sorted: the events' order must not depend on hashing.
        for name in locks.keys.sorted() {
            var lock = locks[name]!
            let before = lock.queue
            lock.queue.removeAll { r in
                guard !newMembers.contains(r.owner) else { return false }
                events.append(.ended(lock: name, r, reason: .ownerLeft))
                return true
            }
            if let h = lock.holder, !newMembers.contains(h.owner) {
                events.append(.released(lock: name, h, token: lock.token, reason: .ownerLeft))
                passOn(name, &lock, &events)
            } else if lock.queue != before {
                for (i, r) in lock.queue.enumerated() where before.firstIndex(of: r) != i {
                    events.append(.waiting(lock: name, r, position: i + 1))
                }
            }
            store(name, lock)
        }
        return events
    }

    // MARK: Internals

    private mutating func grant(_ name: String, _ r: LockRequest, _ lock: inout Lock, _ events: inout [LockEvent]) {
        lock.holder = r
        lock.token = nextToken
        nextToken += 1
        events.append(.granted(lock: name, r, token: lock.token))
    }

    /// The holder is gone: the oldest waiter gets the lock, the others move up.
    private mutating func passOn(_ name: String, _ lock: inout Lock, _ events: inout [LockEvent]) {
        lock.holder = nil
        lock.token = 0
        guard !lock.queue.isEmpty else { return }
        let next = lock.queue.removeFirst()
        grant(name, next, &lock, &events)
        renumber(name, lock, from: 0, &events)
    }

    private func renumber(_ name: String, _ lock: Lock, from start: Int, _ events: inout [LockEvent]) {
        for i in start..<lock.queue.count { events.append(.waiting(lock: name, lock.queue[i], position: i + 1)) }
    }

    private mutating func store(_ name: String, _ lock: Lock) {
        locks[name] = lock.holder == nil && lock.queue.isEmpty ? nil : lock
    }

    // MARK: State transfer

    /// The table as bytes (the checkpoint of `$piglix.locks`): next token,
    /// view id and members, then each lock (by name) with holder, token and
    /// queue.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [1]  // format version
        Self.put(&out, nextToken)
        Self.put(&out, viewID)
        if let members {
            Self.put(&out, 1)
            Self.put(&out, UInt64(members.count))
            for m in members.sorted() { Self.put(&out, m) }
        } else {
            Self.put(&out, 0)
        }
        Self.put(&out, UInt64(locks.count))
        for name in locks.keys.sorted() {
            let lock = locks[name]!
            Self.put(&out, name)
            Self.put(&out, lock.token)
            Self.put(&out, lock.holder.map { _ in 1 } ?? 0)
            if let h = lock.holder { Self.put(&out, h) }
            Self.put(&out, UInt64(lock.queue.count))
            for r in lock.queue { Self.put(&out, r) }
        }
        return out
    }

    public struct DecodeError: Error, Hashable, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String { "lock table unreadable: \(reason)" }
    }

    /// The highest `nextToken` a checkpoint may carry: a history starts at
    /// the wall clock × 1,000 (about 2^51 today) and grants one token at a
    /// time, so a real table stays far below 2^63; a larger one comes from
    /// a broken or hostile peer, and would make a later grant overflow.
    public static let nextTokenMax: UInt64 = 1 << 63

    /// Reads `encoded()`; the limits are this node's. The bytes come from a
    /// peer (the lock group's checkpoint), so a table this node could never
    /// have built is refused: more locks than `limits.locksMax`, a queue
    /// longer than `limits.waitersMax`, a lock named twice, a lock not held,
    /// a `nextToken` of 0 or past `nextTokenMax`, or a lock whose token is 0
    /// or not below `nextToken`.
    public init(decoding bytes: [UInt8], limits: LockLimits = .default) throws(DecodeError) {
        self.init(limits: limits)
        var reader = Reader(bytes: bytes)
        guard try reader.byte() == 1 else { throw DecodeError(reason: "unknown format version") }
        nextToken = try reader.varint()
        guard nextToken >= 1, nextToken <= Self.nextTokenMax else {
            throw DecodeError(reason: "next token \(nextToken) outside 1...\(Self.nextTokenMax)")
        }
        viewID = try reader.varint()
        if try reader.varint() == 1 {
            let n = try reader.count()
            var m = Set<String>()
            for _ in 0..<n { m.insert(try reader.string()) }
            members = m
        }
        let n = try reader.count()
        guard n <= limits.locksMax else { throw DecodeError(reason: "\(n) locks, this node's bound is \(limits.locksMax)") }
        for _ in 0..<n {
            let name = try reader.string()
            guard locks[name] == nil else { throw DecodeError(reason: "lock \(name.prefix(64)) twice") }
            var lock = Lock()
            lock.token = try reader.varint()
            // Every lock of a table is held: a free one passes to its first
            // waiter, or is removed when none waits (`passOn`, `store`).
            guard try reader.varint() == 1 else { throw DecodeError(reason: "lock \(name.prefix(64)) is not held") }
            lock.holder = try reader.request()
            guard lock.token >= 1, lock.token < nextToken else {
                throw DecodeError(reason: "lock \(name.prefix(64)) held with token \(lock.token), next token \(nextToken)")
            }
            let q = try reader.count()
            guard q <= limits.waitersMax else {
                throw DecodeError(reason: "\(q) waiters for lock \(name.prefix(64)), this node's bound is \(limits.waitersMax)")
            }
            for _ in 0..<q { lock.queue.append(try reader.request()) }
            locks[name] = lock
        }
        guard reader.index == bytes.count else { throw DecodeError(reason: "trailing bytes") }
    }

    // MARK: Codec helpers (shared with `LockOperation`)

    static func put(_ out: inout [UInt8], _ v: UInt64) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func put(_ out: inout [UInt8], _ s: String) {
        let utf8 = Array(s.utf8)
        put(&out, UInt64(utf8.count))
        out.append(contentsOf: utf8)
    }

    static func put(_ out: inout [UInt8], _ r: LockRequest) {
        put(&out, r.owner)
        put(&out, r.id)
    }

    struct Reader {
        let bytes: [UInt8]
        var index = 0
        mutating func byte() throws(DecodeError) -> UInt8 {
            guard index < bytes.count else { throw DecodeError(reason: "truncated") }
            index += 1
            return bytes[index - 1]
        }
        mutating func varint() throws(DecodeError) -> UInt64 {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let b = try byte()
                guard shift < 64 else { throw DecodeError(reason: "varint too long") }
                v |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
        }
        mutating func count() throws(DecodeError) -> Int {
            let n = try varint()
            guard n <= UInt64(bytes.count - index) else { throw DecodeError(reason: "count \(n) past the end") }
            return Int(n)
        }
        mutating func string() throws(DecodeError) -> String {
            let n = try count()
            let s = String(decoding: bytes[index..<index + n], as: UTF8.self)
            index += n
            return s
        }
        mutating func request() throws(DecodeError) -> LockRequest {
            let owner = try string()
            return LockRequest(owner: owner, id: try varint())
        }
    }
}

extension LockOperation {
    /// The multicast payload. Its first byte is `0x4C` ('L') and a kind; the
    /// payload travels only on `$piglix.locks`, never on a client topic.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [0x4C]
        switch self {
        case .request(let lock, let r):
            out.append(1)
            LockTable.put(&out, lock)
            LockTable.put(&out, r)
        case .release(let lock, let r):
            out.append(2)
            LockTable.put(&out, lock)
            LockTable.put(&out, r)
        case .releaseToken(let lock, let token):
            out.append(3)
            LockTable.put(&out, lock)
            LockTable.put(&out, token)
        }
        return out
    }

    public init(decoding bytes: [UInt8]) throws(LockTable.DecodeError) {
        var reader = LockTable.Reader(bytes: bytes)
        guard try reader.byte() == 0x4C else { throw LockTable.DecodeError(reason: "not a lock operation") }
        let kind = try reader.byte()
        let lock = try reader.string()
        switch kind {
        case 1: self = .request(lock: lock, try reader.request())
        case 2: self = .release(lock: lock, try reader.request())
        case 3: self = .releaseToken(lock: lock, token: try reader.varint())
        default: throw LockTable.DecodeError(reason: "unknown lock operation \(kind)")
        }
        guard reader.index == bytes.count else { throw LockTable.DecodeError(reason: "trailing bytes") }
    }
}
