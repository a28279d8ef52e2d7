import PiglixGroups
import PiglixTopics

/// Locks in the simulator (the `locks` fault; docs/patterns.md, "Locks").
/// Every node's application keeps the broker's `LockTable`, feeds it the
/// lock operations delivered on `$piglix.locks` and that group's views in
/// the order the core emits them, carries it to joiners as the group's
/// checkpoint, and replays the views seen during a transfer against the
/// deliveries released after it (as `Broker+Locks.swift`). A node ends its
/// local holders when it loses the primary component or its lease (no
/// majority heard for `leaseTicks`), as the broker does. Everything random
/// here draws from its own stream.
struct LockModel {
    static let names = ["a", "b"]
    var rng: SimRandom
    init(seed: UInt64) { rng = SimRandom(seed: seed ^ 0x6C6F_636B_7321_0000) }
}

/// A node's lock state (the broker's `LockState`).
struct SimLocks {
    var table = LockTable(limits: LockLimits(locksMax: 8, waitersMax: 6))
    /// The `$piglix.locks` transfer completed for this incarnation.
    var ready = false
    var pendingViews: [(id: UInt64, clusterEpoch: UInt64, members: Set<String>)] = []
    var nextRequest: UInt64 = 1
    /// This process's requests with an open client stream: lock, and the
    /// token while it holds it.
    var local: [UInt64: (lock: String, token: UInt64?)] = [:]
    /// Requests whose stream ended while the table may still hold them.
    var orphans: [LockRequest: String] = [:]
    var orphansSentAt: UInt64 = 0
    /// Per lock, the tick before which a grant is not told to its client:
    /// its holder's process was excluded by a view (the lock-delay).
    var delayUntil: [String: UInt64] = [:]
    /// Granted requests whose client has not been told yet (lock-delay).
    var heldBack: Set<UInt64> = []
    /// The table's transfer restarted: reconcile the streams at its end.
    var takenAgain = false
}

extension Simulator {
    static let locksPattern = try! TopicPattern("$piglix.locks")
    static let locksTopic = try! Topic("$piglix.locks")

    var locksOn: Bool { config.faults.contains(.locks) }

    /// The lock lease: half the suspicion timeout (`LockSettings.leaseFraction`).
    var leaseTicks: UInt64 { config.settings.suspicionTimeoutTicks / 2 }
    /// The lock-delay: three quarters of the suspicion timeout
    /// (`LockSettings.delayFraction`).
    var lockDelayTicks: UInt64 { config.settings.suspicionTimeoutTicks * 3 / 4 }

    static func owner(_ p: ProcessID) -> String { "\(p.node.rawValue)/\(p.incarnation)" }

    mutating func scheduleLockWorkload() {
        guard locksOn else { return }
        let end = Int(config.durationTicks)
        for _ in 0..<lockModel.rng.int(config.lockRequests) {
            let name = LockModel.names[lockModel.rng.int(0...(LockModel.names.count - 1))]
            queue.push(UInt64(lockModel.rng.int(250...end)), .lockRequest(node: lockModel.rng.int(0...(config.nodes - 1)), lock: name))
        }
        for i in 0..<config.nodes {
            queue.push(UInt64(lockModel.rng.int(1...Int(max(leaseTicks / 4, 1)))), .lockLease(node: i))
        }
    }

    /// A client asks node `i` for a lock (refused, as 503, unless the node
    /// is up, in the primary component, has the table and its lease).
    mutating func lockRequest(_ i: Int, lock: String) {
        guard nodes[i].status == .up, nodes[i].locks.ready, nodes[i].core.isInPrimary, leaseHeld(i) else { return }
        let id = nodes[i].locks.nextRequest
        nodes[i].locks.nextRequest += 1
        nodes[i].locks.local[id] = (lock, nil)
        submitLock(i, .request(lock: lock, LockRequest(owner: Self.owner(nodes[i].core.me), id: id)))
    }

    /// Multicasts a lock operation (`safe`, as the broker): its payload is
    /// the publish number the checker reads, then the operation.
    mutating func submitLock(_ i: Int, _ op: LockOperation) {
        nextNumber += 1
        let number = nextNumber
        record(.publish(at: now, process: nodes[i].core.me, session: 7, number: number, level: .safe, destination: Self.locksTopic.name))
        var payload = [UInt8](repeating: 0, count: 8)
        for b in 0..<8 { payload[b] = UInt8(truncatingIfNeeded: number >> (8 * UInt64(b))) }
        payload += op.encoded()
        let req = PublishRequest(token: number, session: 7, destination: .topic(Self.locksTopic), level: .safe, payload: payload)
        var buf: [GroupEffect] = []
        swap(&buf, &effects)
        nodes[i].core.onPublish(req, now: now, into: &buf)
        effects = buf
        apply(i)
    }

    func leaseHeld(_ i: Int) -> Bool {
        guard let at = nodes[i].core.majorityHeardAt(now: now) else { return false }
        return now - at <= leaseTicks
    }

    /// The periodic lease check: a node that lost its lease or the primary
    /// component ends its local holders; orphans are released when it can.
    mutating func lockLease(_ i: Int) {
        queue.push(now + max(leaseTicks / 5, 1), .lockLease(node: i))
        guard nodes[i].status == .up, locksOn else { return }
        if !nodes[i].core.isInPrimary || !leaseHeld(i) {
            endLocalLocks(i, reason: nodes[i].core.isInPrimary ? "lease" : "primary lost", orphan: true)
            return
        }
        guard nodes[i].locks.ready, !nodes[i].locks.orphans.isEmpty, now >= nodes[i].locks.orphansSentAt + 50 else { return }
        nodes[i].locks.orphansSentAt = now
        for (r, lock) in nodes[i].locks.orphans.sorted(by: { $0.key < $1.key }) { submitLock(i, .release(lock: lock, r)) }
    }

    mutating func endLocalLocks(_ i: Int, reason: String, orphan: Bool) {
        let me = nodes[i].core.me
        for (id, l) in nodes[i].locks.local.sorted(by: { $0.key < $1.key }) {
            if let token = l.token, !nodes[i].locks.heldBack.contains(id) { record(.lockHolder(at: now, process: me, lock: l.lock, token: token, held: false)) }
            if orphan { nodes[i].locks.orphans[LockRequest(owner: Self.owner(me), id: id)] = l.lock }
        }
        if !nodes[i].locks.local.isEmpty { record(.fault(at: now, "\(me) ends its lock streams: \(reason)")) }
        nodes[i].locks.local = [:]
        nodes[i].locks.heldBack = []
    }

    /// The client of a holder releases: by closing its stream (by request)
    /// or by `DELETE` with its token, on its node.
    mutating func lockRelease(_ i: Int, generation: UInt64, id: UInt64, byToken: Bool) {
        guard nodes[i].generation == generation, nodes[i].status == .up, let l = nodes[i].locks.local.removeValue(forKey: id) else { return }
        let me = nodes[i].core.me
        if let token = l.token { record(.lockHolder(at: now, process: me, lock: l.lock, token: token, held: false)) }
        let r = LockRequest(owner: Self.owner(me), id: id)
        if byToken, let token = l.token, nodes[i].core.isInPrimary {
            nodes[i].locks.orphans[r] = l.lock
            submitLock(i, .releaseToken(lock: l.lock, token: token))
        } else if nodes[i].core.isInPrimary {
            nodes[i].locks.orphans[r] = l.lock
            submitLock(i, .release(lock: l.lock, r))
        } else {
            nodes[i].locks.orphans[r] = l.lock
        }
    }

    /// A delivery on `$piglix.locks`: applied live on a ready node, or
    /// released after the checkpoint; ignored during the transfer.
    mutating func deliverLock(_ i: Int, _ d: Delivery) {
        guard d.groups.contains(Self.locksPattern) else { return }
        guard let op = try? LockOperation(decoding: Array(d.message.payload.dropFirst(8))) else {
            record(.fault(at: now, "unreadable lock operation at \(nodes[i].core.me)"))
            return
        }
        var events = applyPendingLockViews(i, upTo: d.view.epoch)
        events += nodes[i].locks.table.apply(op)
        lockEvents(i, events, view: d.view)
    }

    mutating func applyPendingLockViews(_ i: Int, upTo epoch: UInt64?) -> [LockEvent] {
        var events: [LockEvent] = []
        while let v = nodes[i].locks.pendingViews.first, epoch.map({ v.clusterEpoch <= $0 }) ?? true {
            nodes[i].locks.pendingViews.removeFirst()
            events += nodes[i].locks.table.viewChanged(id: v.id, members: v.members)
        }
        return events
    }

    mutating func lockGroupView(_ i: Int, _ gv: GroupView) {
        nodes[i].locks.pendingViews.append((gv.id, gv.clusterView.epoch, Set(gv.members.map(Self.owner))))
        guard nodes[i].locks.ready else { return }
        lockEvents(i, applyPendingLockViews(i, upTo: nil), view: gv.clusterView)
    }

    mutating func applyLockCheckpoint(_ i: Int, state: [UInt8]) {
        do {
            // Empty: this node starts the group's history; tokens start from
            // the clock, as the broker's (simulated ticks for milliseconds).
            nodes[i].locks.table =
                state.isEmpty
                ? LockTable(limits: nodes[i].locks.table.limits, firstToken: LockTable.firstToken(unixMilliseconds: now))
                : try LockTable(decoding: state, limits: nodes[i].locks.table.limits)
        } catch {
            record(.fault(at: now, "unreadable lock table at \(nodes[i].core.me): \(error)"))
        }
        nodes[i].locks.ready = true
        record(.fault(at: now, "lock table at \(nodes[i].core.me): next token \(nodes[i].locks.table.nextToken)"))
        if nodes[i].locks.takenAgain {
            nodes[i].locks.takenAgain = false
            reconcileLocks(i)
        }
    }

    /// The table's checkpoint held an operation a flush cut: as the broker
    /// (`restartLockTransfer`), wait for a survivor's table.
    mutating func restartLockTransfer(_ i: Int) {
        nodes[i].locks.ready = false
        nodes[i].locks.pendingViews = []
        nodes[i].locks.takenAgain = true
    }

    /// As the broker's `reconcileLocalLocks`: each client learns what the
    /// primary's table says of its request.
    mutating func reconcileLocks(_ i: Int) {
        let me = nodes[i].core.me
        let mine = Self.owner(me)
        var inTable: [LockRequest: (lock: String, token: UInt64?)] = [:]
        for (name, lock) in nodes[i].locks.table.locks {
            if let h = lock.holder, h.owner == mine { inTable[h] = (name, lock.token) }
            for r in lock.queue where r.owner == mine { inTable[r] = (name, nil) }
        }
        for (id, l) in nodes[i].locks.local.sorted(by: { $0.key < $1.key }) {
            let r = LockRequest(owner: mine, id: id)
            let told = nodes[i].locks.heldBack.contains(id) ? nil : l.token
            let entry = inTable.removeValue(forKey: r)
            if let entry, entry.token != nil, entry.token == told { continue }
            if entry != nil, entry?.token == nil, told == nil {
                nodes[i].locks.local[id]!.token = nil
                nodes[i].locks.heldBack.remove(id)
                continue
            }
            if let t = told { record(.lockHolder(at: now, process: me, lock: l.lock, token: t, held: false)) }
            nodes[i].locks.heldBack.remove(id)
            if let entry, let token = entry.token, told == nil {
                nodes[i].locks.local[id]!.token = token
                reveal(i, id)
            } else {
                // Told a grant the primary did not make (or made with
                // another token), or not in its table (gone, or in flight:
                // its later grant finds no stream and is released as an
                // orphan).
                nodes[i].locks.local[id] = nil
                if let entry { nodes[i].locks.orphans[r] = entry.lock }
            }
        }
        for (r, entry) in inTable.sorted(by: { $0.key < $1.key }) { nodes[i].locks.orphans[r] = entry.lock }
    }

    /// Records what the table did (every node), and tells this node's clients.
    mutating func lockEvents(_ i: Int, _ events: [LockEvent], view: ViewID) {
        let me = nodes[i].core.me
        let mine = Self.owner(me)
        for event in events {
            switch event {
            case .granted(let lock, let r, let token):
                record(.lockGrant(at: now, process: me, view: view, lock: lock, request: r.description, token: token))
                guard r.owner == mine else { continue }
                guard nodes[i].locks.local[r.id] != nil else {
                    nodes[i].locks.orphans[r] = lock
                    continue
                }
                nodes[i].locks.local[r.id]!.token = token
                if let until = nodes[i].locks.delayUntil[lock], now < until {
                    nodes[i].locks.heldBack.insert(r.id)
                    record(.fault(at: now, "\(me) tells the grant of \(lock) token \(token) at t=\(until): the lock-delay"))
                    queue.push(until, .lockReveal(node: i, generation: nodes[i].generation, id: r.id))
                } else {
                    reveal(i, r.id)
                }
            case .released(let lock, let r, let token, let reason):
                record(.lockReleased(at: now, process: me, lock: lock, token: token))
                if reason == .ownerLeft { nodes[i].locks.delayUntil[lock] = now + lockDelayTicks }
                guard r.owner == mine else { continue }
                nodes[i].locks.orphans[r] = nil
                let wasHeldBack = nodes[i].locks.heldBack.remove(r.id) != nil
                if let l = nodes[i].locks.local.removeValue(forKey: r.id), let t = l.token, !wasHeldBack {
                    record(.lockHolder(at: now, process: me, lock: lock, token: t, held: false))
                }
            case .ended(_, let r, _):
                guard r.owner == mine else { continue }
                nodes[i].locks.orphans[r] = nil
                nodes[i].locks.local[r.id] = nil
                nodes[i].locks.heldBack.remove(r.id)
            case .waiting:
                break
            }
        }
    }

    /// The client of request `id` learns it holds the lock.
    mutating func reveal(_ i: Int, _ id: UInt64) {
        guard let l = nodes[i].locks.local[id], let token = l.token else { return }
        record(.lockHolder(at: now, process: nodes[i].core.me, lock: l.lock, token: token, held: true))
        let hold = UInt64(lockModel.rng.int(10...300))
        queue.push(now + hold, .lockRelease(node: i, generation: nodes[i].generation, id: id, byToken: lockModel.rng.chance(0.5)))
    }

    /// The lock-delay ran out for a grant held back from its client.
    mutating func lockReveal(_ i: Int, generation: UInt64, id: UInt64) {
        guard nodes[i].generation == generation, nodes[i].status == .up, nodes[i].locks.heldBack.remove(id) != nil else { return }
        reveal(i, id)
    }

    /// The table's holders and waiters, for the final checks (L3).
    func lockContents(_ i: Int) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for (name, l) in nodes[i].locks.table.locks {
            out[name] = [l.holder.map { "\($0.description)@\(l.token)" } ?? "-"] + l.queue.map(\.description)
        }
        return out
    }
}

/// L1–L4 over a trace (docs/patterns.md, "Locks").
struct LockChecker {
    struct Grant {
        var process: ProcessID
        var view: ViewID
        var lock: String
        var request: String
        var token: UInt64
        var event: TraceEvent
    }

    static func check(
        _ trace: [TraceEvent], final: FinalState?, inPrimaryHistory: (ProcessID, ViewID?) -> Bool,
        report: (Property, String, [TraceEvent]) -> Void
    ) {
        var grants: [Grant] = []
        // Per process: the holder token of each lock (L1 per replica) and the last token granted (L2).
        var holding: [ProcessID: [String: (UInt64, TraceEvent)]] = [:]
        var lastToken: [ProcessID: (UInt64, TraceEvent)] = [:]
        // Per token, the first grant within each view.
        var inView: [ViewID: [UInt64: Grant]] = [:]
        // L4: holder intervals at the owners, per lock.
        var open: [String: [UInt64: (ProcessID, TraceEvent)]] = [:]
        var paused: Set<UInt64> = []
        for e in trace {
            switch e {
            case .lockGrant(_, let p, let view, let lock, let request, let token):
                let g = Grant(process: p, view: view, lock: lock, request: request, token: token, event: e)
                grants.append(g)
                if let h = holding[p]?[lock] {
                    report(.l1MutualExclusion, "\(p) granted \(lock) token \(token) while token \(h.0) held it", [h.1, e])
                }
                holding[p, default: [:]][lock] = (token, e)
                if let last = lastToken[p], last.0 >= token {
                    report(.l2FencingTokens, "\(p) granted token \(token) after token \(last.0)", [last.1, e])
                }
                lastToken[p] = (token, e)
                if let other = inView[view]?[token], other.lock != lock || other.request != request {
                    report(.l1MutualExclusion, "in view \(view) token \(token) granted to \(other.request) on \(other.lock) and to \(request) on \(lock)", [other.event, e])
                } else if inView[view]?[token] == nil {
                    inView[view, default: [:]][token] = g
                }
            case .lockReleased(_, let p, let lock, let token):
                if holding[p]?[lock]?.0 == token { holding[p]?[lock] = nil }
            case .lockHolder(let t, let p, let lock, let token, let held):
                if held {
                    for (other, o) in open[lock] ?? [:] where other != token && !paused.contains(o.0.node.rawValue) {
                        report(.l4RealTime, "at t=\(t) \(p) holds \(lock) with token \(token) while \(o.0) still holds it with token \(other)", [o.1, e])
                    }
                    open[lock, default: [:]][token] = (p, e)
                } else {
                    open[lock]?[token] = nil
                }
            case .fault(_, let text):
                // A paused process acts on nothing: the fencing token, not
                // the lease, protects the resource from it (L4's exception).
                if text.hasPrefix("pause ") || text.hasPrefix("crash ") {
                    for (lock, holders) in open {
                        for (token, h) in holders where text.contains(h.0.description) {
                            if text.hasPrefix("crash ") { open[lock]?[token] = nil } else { paused.insert(h.0.node.rawValue) }
                        }
                    }
                } else if text.hasPrefix("resume ") {
                    paused = paused.filter { !text.contains("n\($0)#") }
                }
            case .rejoined(_, let old, _):
                holding[old] = nil
            default:
                break
            }
        }
        // L1 and L2 across views, in the primary history (as I2): a token is
        // granted to one request only, and a lock's tokens grow.
        var byToken: [UInt64: Grant] = [:]
        for g in grants where inPrimaryHistory(g.process, g.view) {
            if let other = byToken[g.token], other.lock != g.lock || other.request != g.request {
                report(.l2FencingTokens, "token \(g.token) granted to \(other.request) on \(other.lock) and to \(g.request) on \(g.lock) in the primary history", [other.event, g.event])
            } else if byToken[g.token] == nil {
                byToken[g.token] = g
            }
        }
        guard let final else { return }
        // L3: after the faults stop, no live replica's table names a process
        // that is not live (its locks passed on, its requests dropped), and
        // the replicas agree.
        let live = Set(final.views.keys.map { "\($0.node.rawValue)/\($0.incarnation)" })
        let tables = final.lockTables.sorted { $0.key < $1.key }
        for (p, table) in tables {
            for (lock, entries) in table.sorted(by: { $0.key < $1.key }) {
                for entry in entries where entry != "-" {
                    let owner = String(entry.prefix { $0 != "#" })
                    if !live.contains(owner) {
                        report(.l3PassOn, "\(p)'s table still names \(entry) of a process that is gone, on lock \(lock)", [])
                        return
                    }
                }
            }
        }
        for t in tables.dropFirst() where t.value != tables[0].value {
            report(.l1MutualExclusion, "final lock tables of \(tables[0].key) and \(t.key) differ: \(tables[0].value) vs \(t.value)", [])
            break
        }
    }
}
