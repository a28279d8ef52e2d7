#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PiglixCluster
import PiglixGroups
import PiglixTopics
import PiglixWire

/// Why a lock call was refused.
public enum LockError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName(String)
    case notFound(String)
    case tokenMismatch(String)
    /// A bound (locks, waiters, streams per connection): `429`.
    case tooMany(String)
    /// Not now (no primary component, transfer running, lease, node bound): `503`.
    case unavailable(String)
    case shuttingDown

    public var status: Int {
        switch self {
        case .invalidName: 400
        case .notFound: 404
        case .tokenMismatch: 409
        case .tooMany: 429
        case .unavailable, .shuttingDown: 503
        }
    }

    public var description: String {
        switch self {
        case .invalidName(let why), .notFound(let why), .tokenMismatch(let why), .tooMany(let why), .unavailable(let why): why
        case .shuttingDown: "the broker is shutting down"
        }
    }
}

/// One lock as `GET /v1/locks` shows it.
public struct LockInfo: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// The requesting node's name.
        public var node: String
        /// The requesting process, `nodeIDhex/incarnation` (cluster).
        public var process: String
        public var request: UInt64
    }
    public var name: String
    public var holder: Entry?
    public var token: UInt64
    public var queue: [Entry]
}

/// An open lock request of this node: its records, in order, until a final
/// one (`released`, `lost`). Closing it (the client went away) releases the
/// lock or leaves the queue.
public final class LockHandle: Sendable {
    public let name: String
    public let id: UInt64
    public let records: AsyncStream<LockRecord>
    let continuation: AsyncStream<LockRecord>.Continuation
    let broker: Broker

    init(name: String, id: UInt64, broker: Broker) {
        self.name = name
        self.id = id
        self.broker = broker
        (records, continuation) = AsyncStream<LockRecord>.makeStream()
    }

    /// The client went away or the stream ended: release.
    public func close() { broker.closeLock(id) }

    /// The server ends the stream (the bearer's token expired): a `lost`
    /// record with `reason`, then the release.
    public func end(reason: String) { broker.closeLock(id, reason: reason) }

    /// An idle stream's `heartbeat` record.
    public func heartbeat() { continuation.yield(.heartbeat) }
}

/// A request of this node in the table's queue or holding the lock.
struct LocalLock {
    var handle: LockHandle
    var request: LockRequest
    var token: UInt64?
    var position: Int?
    /// The request's multicast has not been acked yet.
    var pending = true
    /// Refused at its delivery (a bound): the request call answers 429.
    var refused: LockEndReason?
    /// Granted while the lock-delay runs: the client is told at its end.
    var heldBack = false
}

/// The lock state of a broker (under its mutex).
struct LockState {
    var table: LockTable
    var local: [UInt64: LocalLock] = [:]
    var nextRequest: UInt64 = 1
    /// This process as the table names it (`node/incarnation`).
    var owner = "local"
    /// Cluster: group views of `$piglix.locks` seen while its transfer ran,
    /// applied in their order against the deliveries released after it.
    var pendingViews: [(id: UInt64, clusterEpoch: UInt64, members: Set<String>)] = []
    /// Requests of this process the table may still hold though their
    /// stream ended (lease, primary lost, closed): a release is multicast
    /// until the table drops them. Value: the lock, and when last sent.
    var orphans: [LockRequest: (lock: String, sentAt: ContinuousClock.Instant?)] = [:]
    /// The lease ran out: this node has not heard from a majority lately.
    var leaseExpired = false
    /// The last tokens released by `DELETE` (any node's), oldest first.
    var releasedByToken: [UInt64] = []
    var granted: UInt64 = 0
    var lost: UInt64 = 0
    /// The lease check (cluster), cancelled at shutdown.
    var leaseTask: Task<Void, Never>?
    /// The lock-delay (cluster; zero on a single node).
    var delay: Duration = .zero
    /// Per lock, when a grant may next be told to its client: the holder's
    /// process was excluded by a view change (the lock-delay).
    var delayUntil: [String: ContinuousClock.Instant] = [:]
    /// The table's transfer restarted (`clusterTransferRestarted`): the
    /// new table is reconciled with this node's streams when it arrives.
    var takenAgain = false
}

extension Broker {
    /// The internal group every node joins so that every node holds the lock
    /// table (docs/patterns.md, "Locks"); its topic carries lock operations.
    public static var locksPattern: TopicPattern { ClusterSettings.locksPattern }
    static let locksTopic: Topic = {
        do { return try Topic("$piglix.locks") } catch { preconditionFailure("\(error)") }
    }()
    /// The publisher session of lock operations: FIFO per session keeps a
    /// release after its request.
    static let lockSession: UInt64 = 0x4C4F_434B_0000_0000

    /// 1 to `nameBytesMax` bytes of `[A-Za-z0-9._:-]`.
    public func checkLockName(_ name: String) throws(LockError) {
        let max = settings.locks.nameBytesMax
        guard !name.isEmpty, name.utf8.count <= max else {
            throw .invalidName("lock name must be 1 to \(max) bytes, not \(name.utf8.count)")
        }
        for (i, byte) in name.utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"):
                continue
            default:
                throw .invalidName("lock name byte \(i + 1) is not one of A-Z a-z 0-9 . _ : - (a lock name is 1 to \(max) bytes of them)")
            }
        }
    }

    /// Why this node cannot take lock calls now, if it cannot.
    func lockUnavailable(_ state: State) -> LockError? {
        if state.closed { return .shuttingDown }
        guard cluster != nil else { return nil }
        if !(state.clusterStatus?.primary ?? false) {
            return .unavailable("this node is not in the primary component; locks are granted only there")
        }
        if !state.active.contains(Self.locksPattern) {
            return .unavailable("this node has not yet received the cluster's lock table (state transfer); retry in a moment")
        }
        if state.lock.leaseExpired {
            return .unavailable("this node has not heard from a majority of the cluster lately (the lock lease); retry in a moment")
        }
        return nil
    }

    // MARK: Requests

    /// `POST /v1/locks/{name}`: queues a request and returns its stream once
    /// the request is in the table (delivered in the agreed order here); the
    /// stream's first record says `waiting` or `granted`.
    public func requestLock(_ name: String) async throws(LockError) -> LockHandle {
        try checkLockName(name)
        let handle = try state.withLock { state throws(LockError) -> LockHandle in
            if let why = lockUnavailable(state) { throw why }
            if state.lock.local.count >= settings.locks.streamsPerNodeMax {
                throw .unavailable("this node holds its limit of \(settings.locks.streamsPerNodeMax) open lock streams; retry later or on another node")
            }
            // Early answers for the bounds; the table decides them again at delivery.
            let limits = state.lock.table.limits
            if let lock = state.lock.table.locks[name] {
                if lock.queue.count >= limits.waitersMax {
                    throw .tooMany("\(limits.waitersMax) requests wait for lock \(name) already (the waiters bound); retry later")
                }
            } else if state.lock.table.lockCount >= limits.locksMax {
                throw .tooMany("the cluster holds \(limits.locksMax) locks already (the locks bound); retry later")
            }
            let id = state.lock.nextRequest
            state.lock.nextRequest += 1
            let handle = LockHandle(name: name, id: id, broker: self)
            let request = LockRequest(owner: state.lock.owner, id: id)
            state.lock.local[id] = LocalLock(handle: handle, request: request)
            if cluster == nil {
                let events = state.lock.table.request(name, request)
                handleLockEvents(events, state: &state)
            }
            return handle
        }
        if let cluster {
            let request = state.withLock { $0.lock.local[handle.id]?.request }
            guard let request else { throw .unavailable("the request ended before it was queued") }
            switch await multicast(.request(lock: name, request), cluster) {
            case .acked?:
                break
            case .refused(let why)?:
                dropLocal(handle.id)
                throw .unavailable("the request was not multicast: \(why)")
            case .failed?, nil:
                // Its outcome is unknown: if the cluster delivered it, this
                // process is being excluded and its requests are dropped.
                dropLocal(handle.id)
                throw .unavailable("this node left the primary component before the request was queued")
            }
        }
        let refused = state.withLock { state -> LockEndReason? in
            state.lock.local[handle.id]?.pending = false
            guard let reason = state.lock.local[handle.id]?.refused else { return nil }
            state.lock.local[handle.id] = nil
            return reason
        }
        switch refused {
        case nil: return handle
        case .tooManyLocks?, .tooManyWaiters?: throw .tooMany("\(refused!); retry later")
        case let reason?: throw .unavailable("the request was not queued: \(reason)")
        }
    }

    /// Multicasts one lock operation on `$piglix.locks` at level `safe`;
    /// acked once delivered here (and so applied to this node's table).
    /// `safe`, not `total`: a member delivers it only once every member of
    /// the view holds it, so a grant one node made is a grant every
    /// survivor makes (P8, then P3 through the flush). With `total` a node
    /// about to be excluded could deliver, and grant with token N, a request
    /// the survivors never receive; they would give N to another request.
    func multicast(_ operation: LockOperation, _ cluster: any GroupLayer) async -> ClusterPublishOutcome? {
        let publish = Self.lockPublish(operation)
        return await withCheckedContinuation { continuation in
            cluster.publish([publish]) { continuation.resume(returning: $0.first) }
        }
    }

    static func lockPublish(_ operation: LockOperation) -> ClusterPublish {
        ClusterPublish(destination: .topic(locksTopic), level: .safe, session: lockSession, payload: operation.encoded())
    }

    /// Forgets a local request that never made it into the table.
    func dropLocal(_ id: UInt64) {
        state.withLock { state in
            if let l = state.lock.local.removeValue(forKey: id) { l.handle.continuation.finish() }
        }
    }

    /// The stream of request `id` closed: release the lock or leave the queue.
    func closeLock(_ id: UInt64, reason: String? = nil) {
        state.withLock { state in
            guard let l = state.lock.local.removeValue(forKey: id) else { return }
            if let reason { l.handle.continuation.yield(.lost(lock: l.handle.name, token: l.token, reason: reason)) }
            l.handle.continuation.finish()
            if cluster == nil {
                handleLockEvents(state.lock.table.release(l.handle.name, l.request), state: &state)
            } else {
                state.lock.orphans[l.request] = (l.handle.name, nil)
            }
        }
        sendOrphanReleases()
    }

    /// `DELETE /v1/locks/{name}?token=N`: releases the lock if `token` is its
    /// current holder's (404 for a lock nobody holds, 409 for another token).
    ///
    /// In a cluster this node's replica may lag the node that told the
    /// client `granted` by a few milliseconds: a token this replica has not
    /// granted yet (`≥ nextToken`) is multicast all the same and decided at
    /// its delivery, in the agreed order, like every release. A token below
    /// `nextToken` that is not the holder's is stale here and everywhere
    /// (tokens only grow), and is answered at once.
    public func releaseLock(_ name: String, token: UInt64) async throws(LockError) {
        try checkLockName(name)
        let decideAtDelivery = try state.withLock { state throws(LockError) -> Bool in
            if let why = lockUnavailable(state) { throw why }
            let holder = state.lock.table.holder(of: name)
            if holder?.token == token {
                if cluster == nil { handleLockEvents(state.lock.table.release(name, token: token), state: &state) }
                return false
            }
            if cluster != nil, token >= state.lock.table.nextToken { return true }
            throw Self.notHeld(name, token: token, holder: holder?.token)
        }
        guard let cluster else { return }
        switch await multicast(.releaseToken(lock: name, token: token), cluster) {
        case .acked?:
            guard decideAtDelivery else { return }
            try state.withLock { state throws(LockError) in
                if state.lock.releasedByToken.contains(token) { return }
                throw Self.notHeld(name, token: token, holder: state.lock.table.holder(of: name)?.token)
            }
        case .refused(let why)?: throw .unavailable("the release was not multicast: \(why)")
        case .failed?, nil: throw .unavailable("this node left the primary component before the release was delivered; the lock may or may not be released")
        }
    }

    static func notHeld(_ name: String, token: UInt64, holder: UInt64?) -> LockError {
        guard let holder else { return .notFound("no one holds lock \(name) (no request for it is open)") }
        return .tokenMismatch("token \(token) is not the current holder's of lock \(name): it holds token \(holder)")
    }

    /// `GET /v1/locks`: this node's replica of the table.
    public func lockTable() -> (locks: [LockInfo], nextToken: UInt64, ready: Bool) {
        state.withLock { state in
            var names: [String: String] = [:]
            for member in state.clusterStatus?.members ?? [] { names[String(nodeID(forName: member).rawValue, radix: 16)] = member }
            func entry(_ r: LockRequest) -> LockInfo.Entry {
                let node = r.owner.split(separator: "/", maxSplits: 1).first.map(String.init) ?? r.owner
                return LockInfo.Entry(node: cluster == nil ? settings.nodeID : names[node] ?? node, process: r.owner, request: r.id)
            }
            let locks = state.lock.table.locks.keys.sorted().map { name in
                let l = state.lock.table.locks[name]!
                return LockInfo(name: name, holder: l.holder.map(entry), token: l.token, queue: l.queue.map(entry))
            }
            return (locks, state.lock.table.nextToken, lockUnavailable(state) == nil)
        }
    }

    /// `/metrics`: locks existing, waiting requests, this node's streams, grants and losses here.
    public var lockStats: (locks: Int, waiters: Int, streams: Int, granted: UInt64, lost: UInt64) {
        state.withLock { ($0.lock.table.lockCount, $0.lock.table.waiterCount, $0.lock.local.count, $0.lock.granted, $0.lock.lost) }
    }

    // MARK: Events

    /// Tells this node's requests what the table did to them.
    func handleLockEvents(_ events: [LockEvent], state: inout State) {
        for event in events {
            switch event {
            case .granted(let name, let r, let token):
                guard r.owner == state.lock.owner else { continue }
                guard var l = state.lock.local[r.id] else {
                    // Its stream ended already (closed, lease): give it back.
                    state.lock.orphans[r] = state.lock.orphans[r] ?? (name, nil)
                    continue
                }
                l.token = token
                l.position = nil
                if let until = state.lock.delayUntil[name], ContinuousClock.now < until {
                    l.heldBack = true
                    state.lock.local[r.id] = l
                    revealLock(r.id, at: until)
                    continue
                }
                state.lock.local[r.id] = l
                state.lock.granted += 1
                l.handle.continuation.yield(.granted(lock: name, token: token))
            case .waiting(let name, let r, let position):
                guard r.owner == state.lock.owner, var l = state.lock.local[r.id], l.position != position else { continue }
                l.position = position
                state.lock.local[r.id] = l
                l.handle.continuation.yield(.waiting(lock: name, position: position))
            case .released(let name, let r, let token, let reason):
                if reason == .ownerLeft, state.lock.delay > .zero {
                    let now = ContinuousClock.now
                    state.lock.delayUntil = state.lock.delayUntil.filter { $0.value > now }
                    state.lock.delayUntil[name] = now + state.lock.delay
                }
                if reason == .releasedByToken {
                    // For a DELETE decided at delivery (`releaseLock`): the
                    // last few tokens released by token.
                    state.lock.releasedByToken.append(token)
                    if state.lock.releasedByToken.count > 256 { state.lock.releasedByToken.removeFirst(128) }
                }
                guard r.owner == state.lock.owner else { continue }
                state.lock.orphans[r] = nil
                guard let l = state.lock.local.removeValue(forKey: r.id) else { continue }
                switch reason {
                case _ where l.heldBack:
                    // Its client was never told it held the lock.
                    l.handle.continuation.yield(.lost(lock: name, token: nil, reason: reason.description))
                case .releasedByToken:
                    l.handle.continuation.yield(.released(lock: name, token: token))
                default:
                    state.lock.lost += 1
                    l.handle.continuation.yield(.lost(lock: name, token: token, reason: reason.description))
                }
                l.handle.continuation.finish()
            case .ended(let name, let r, let reason):
                guard r.owner == state.lock.owner else { continue }
                state.lock.orphans[r] = nil
                guard var l = state.lock.local[r.id] else { continue }
                if l.pending {
                    l.refused = reason
                    state.lock.local[r.id] = l
                    continue
                }
                state.lock.local[r.id] = nil
                l.handle.continuation.yield(.lost(lock: name, token: nil, reason: reason.description))
                l.handle.continuation.finish()
            }
        }
    }

    /// Tells request `id`'s client, at `until` (the lock-delay's end), that
    /// it holds the lock, unless its stream or its grant ended meanwhile.
    func revealLock(_ id: UInt64, at until: ContinuousClock.Instant) {
        Task { [weak self] in
            try? await Task.sleep(until: until, clock: .continuous)
            self?.state.withLock { state in
                guard var l = state.lock.local[id], l.heldBack, let token = l.token else { return }
                l.heldBack = false
                state.lock.local[id] = l
                state.lock.granted += 1
                l.handle.continuation.yield(.granted(lock: l.handle.name, token: token))
            }
        }
    }

    /// Ends every stream of this node with `lost` (the lease ran out, the
    /// primary component was lost, a rejoin): the table may still name their
    /// requests, so they become orphans whose release is sent when it can be.
    func endLocalLocks(reason: String, orphan: Bool, state: inout State) {
        for (_, l) in state.lock.local {
            state.lock.lost += 1
            l.handle.continuation.yield(.lost(lock: l.handle.name, token: l.heldBack ? nil : l.token, reason: reason))
            l.handle.continuation.finish()
            if orphan { state.lock.orphans[l.request] = (l.handle.name, nil) }
        }
        state.lock.local.removeAll()
    }

    /// Multicasts a release for each orphan not sent within the last second
    /// (while this node is in the primary component).
    func sendOrphanReleases() {
        guard let cluster else { return }
        let now = ContinuousClock.now
        let ops = state.withLock { state -> [ClusterPublish] in
            guard lockUnavailable(state) == nil else { return [] }
            var ops: [ClusterPublish] = []
            for (r, o) in state.lock.orphans where o.sentAt.map({ now - $0 > .seconds(1) }) ?? true {
                // Another incarnation's, or one the table no longer holds
                // (released, dropped, or never delivered): nothing to
                // release. A request still in flight that is delivered
                // later comes back here through its `granted` event.
                let held = state.lock.table.locks[o.lock].map { $0.holder == r || $0.queue.contains(r) } ?? false
                guard r.owner == state.lock.owner, held || o.sentAt == nil else {
                    state.lock.orphans[r] = nil
                    continue
                }
                state.lock.orphans[r] = (o.lock, now)
                ops.append(Self.lockPublish(.release(lock: o.lock, r)))
            }
            return ops
        }
        if !ops.isEmpty { cluster.publish(ops) { _ in } }
    }

    // MARK: Cluster (on the cluster's event loop, in the core's order)

    /// Applies the lock group's views seen during the transfer that belong
    /// to cluster views up to `epoch` (all of them: nil). Applying a view
    /// of epoch E before the deliveries of E that preceded it is harmless:
    /// within one cluster view the lock group only grows (joins); members
    /// leave it only at a cluster view change (nodes never leave the group
    /// otherwise), and a view's drops are what the table acts on.
    static func applyPendingLockViews(upTo epoch: UInt64?, state: inout State) -> [LockEvent] {
        var events: [LockEvent] = []
        while let v = state.lock.pendingViews.first, epoch.map({ v.clusterEpoch <= $0 }) ?? true {
            state.lock.pendingViews.removeFirst()
            events += state.lock.table.viewChanged(id: v.id, members: v.members)
        }
        return events
    }

    /// A delivered lock operation: live on an active node, or released
    /// after the checkpoint on a joiner. Live deliveries during the
    /// transfer (no group) are in the checkpoint or released after it.
    func deliverLockOperation(_ delivery: Delivery, state: inout State) {
        guard delivery.groups.contains(Self.locksPattern) else { return }
        let operation: LockOperation
        do { operation = try LockOperation(decoding: delivery.message.payload) } catch {
            logger.error("a lock operation is unreadable (\(error)); ignored on every node alike")
            return
        }
        var events = Self.applyPendingLockViews(upTo: delivery.view.epoch, state: &state)
        events += state.lock.table.apply(operation)
        handleLockEvents(events, state: &state)
    }

    func lockGroupViewInstalled(view: UInt64, clusterEpoch: UInt64, processes: [String], state: inout State) {
        state.lock.pendingViews.append((view, clusterEpoch, Set(processes)))
        guard state.active.contains(Self.locksPattern) else { return }
        handleLockEvents(Self.applyPendingLockViews(upTo: nil, state: &state), state: &state)
    }

    /// The first token of a table that starts a history now (a single
    /// node's start; the lock group started empty).
    static func wallClockFirstToken() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let ms = UInt64(max(now.tv_sec, 0)) * 1000 + UInt64(max(now.tv_nsec, 0)) / 1_000_000
        return LockTable.firstToken(unixMilliseconds: ms)
    }

    /// The lock table's checkpoint held an operation a flush cut (its
    /// provider was excluded after delivering it alone): a survivor's
    /// checkpoint will replace it. Until then lock calls answer `503` (no
    /// table); this node's streams stay, and are reconciled with the new
    /// table when it arrives (`reconcileLocalLocks`).
    func restartLockTransfer(state: inout State) {
        state.active.remove(Self.locksPattern)
        state.lock.pendingViews = []
        state.lock.takenAgain = true
        state.transferProgress[Self.locksPattern] = .now
    }

    /// After a table taken again: each stream of this node is told what the
    /// primary's table says of its request. Granted there: `granted` with
    /// that token, unless it was told that token already. Waiting there:
    /// its position. A stream told a grant the primary did not make (or
    /// made with another token) ends with `lost`, and its request is
    /// released. Absent: `lost` (`waiting` streams too), unless its request
    /// is still in flight. Requests of this process the table holds without
    /// a stream are released.
    func reconcileLocalLocks(state: inout State) {
        var inTable: [LockRequest: (lock: String, token: UInt64?, position: Int?)] = [:]
        for (name, lock) in state.lock.table.locks {
            if let h = lock.holder, h.owner == state.lock.owner { inTable[h] = (name, lock.token, nil) }
            for (i, r) in lock.queue.enumerated() where r.owner == state.lock.owner { inTable[r] = (name, nil, i + 1) }
        }
        let reason = "this node's copy of the lock table was not the cluster's (taken from a node a flush then excluded); the cluster's does not grant this request"
        for id in state.lock.local.keys.sorted() {
            var l = state.lock.local[id]!
            let told = l.heldBack ? nil : l.token
            switch inTable.removeValue(forKey: l.request) {
            case (_, let token?, _)? where told == token:
                continue
            case (let name, let token?, _)? where told == nil:
                l.token = token
                l.position = nil
                l.heldBack = false
                state.lock.local[id] = l
                state.lock.granted += 1
                l.handle.continuation.yield(.granted(lock: name, token: token))
            case (let name, nil, let position?)? where told == nil:
                l.token = nil
                l.heldBack = false
                guard l.position != position else {
                    state.lock.local[id] = l
                    continue
                }
                l.position = position
                state.lock.local[id] = l
                l.handle.continuation.yield(.waiting(lock: name, position: position))
            case (let name, _, _)?:
                state.lock.local[id] = nil
                state.lock.lost += 1
                l.handle.continuation.yield(.lost(lock: name, token: told, reason: reason))
                l.handle.continuation.finish()
                state.lock.orphans[l.request] = (name, nil)
            case nil where l.pending:
                continue
            case nil:
                state.lock.local[id] = nil
                state.lock.lost += 1
                l.handle.continuation.yield(.lost(lock: l.handle.name, token: told, reason: reason))
                l.handle.continuation.finish()
            }
        }
        for (r, entry) in inTable { state.lock.orphans[r] = (entry.lock, nil) }
    }

    func applyLockCheckpoint(_ chunk: [UInt8], state: inout State) -> Bool {
        do {
            // An empty chunk: no member held the table, this node starts the
            // group's history (a provider's table is never empty bytes).
            state.lock.table =
                chunk.isEmpty
                ? LockTable(limits: settings.locks.table, firstToken: Self.wallClockFirstToken())
                : try LockTable(decoding: chunk, limits: settings.locks.table)
        } catch {
            logger.error("the lock table checkpoint is unreadable (\(error)); asking another member")
            return false
        }
        state.active.insert(Self.locksPattern)
        state.transferProgress[Self.locksPattern] = nil
        if state.lock.takenAgain {
            state.lock.takenAgain = false
            reconcileLocalLocks(state: &state)
        }
        return true
    }

    /// The lease: while this node has not heard from a majority of its view
    /// for `leaseFraction` of the suspicion timeout, its lock streams end and
    /// it takes no lock call. Checked every tenth of the lease; the task
    /// holds the broker only while it checks.
    func startLockLease() -> Task<Void, Never>? {
        guard let cluster else { return nil }
        let lease = cluster.suspicionTimeout * settings.locks.leaseFraction
        let period = max(lease / 10, .milliseconds(5))
        return Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                guard let self, !self.isShuttingDown else { return }
                await self.checkLockLease(lease)
            }
        }
    }

    func checkLockLease(_ lease: Duration) async {
        guard let cluster else { return }
        let ago = await cluster.majorityHeardAgo()
        let expired = ago.map { $0 > lease } ?? true
        state.withLock { state in
            if expired, !state.lock.leaseExpired, !state.lock.local.isEmpty {
                let ms = ago.map { "\($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) ms" } ?? "ever"
                logger.warning("no majority heard for \(ms): the lock lease ran out; ending this node's lock streams")
                endLocalLocks(
                    reason: "this node has not heard from a majority of the cluster for \(ms) (the lock lease): the lock may be granted elsewhere",
                    orphan: true, state: &state)
            }
            state.lock.leaseExpired = expired
        }
        sendOrphanReleases()
    }
}

/// The lock table's checkpoint: the whole table as one chunk.
struct LockCheckpoint: CheckpointReader {
    var bytes: [UInt8]
    mutating func nextChunk(bytes: Int) -> (chunk: [UInt8], last: Bool) { (self.bytes, true) }
}
