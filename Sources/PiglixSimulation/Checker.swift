import PiglixGroups

/// The properties P1–P10 (docs/virtual-synchrony.md, "How each property is
/// kept"), I1–I3 of idempotent publish and Q1–Q3 of work queues
/// (docs/patterns.md).
public enum Property: String, CaseIterable, Hashable, Sendable, Comparable {
    case p1SelfInclusion = "P1 self inclusion"
    case p2ViewAgreement = "P2 view agreement"
    case p3VirtualSynchrony = "P3 virtual synchrony"
    case p4SendingView = "P4 sending view delivery"
    case p5Integrity = "P5 integrity"
    case p6Fifo = "P6 FIFO"
    case p7TotalOrder = "P7 total order"
    case p8Safe = "P8 safe delivery"
    case p9Liveness = "P9 liveness"
    case p10StateTransfer = "P10 state transfer"
    /// An idempotent record is accepted (delivered) at most once per process.
    case i1AtMostOnce = "I1 idempotent at most once"
    /// Processes that accept a `(producer, sequence)` accept the same
    /// publish: always within one view; across views among acceptances in
    /// the primary history (see `Checker`); the final tables agree.
    case i2Agreement = "I2 idempotent agreement"
    /// A retry answered as a duplicate names the accepted original.
    case i3RetryAnswer = "I3 idempotent retry answer"
    /// Replicas agree on each lock's holder: at most one holder per lock at
    /// each replica, one request per token within a view, equal final tables.
    case l1MutualExclusion = "L1 lock mutual exclusion"
    /// Fencing tokens grow at every replica and are never given twice (in
    /// the primary history).
    case l2FencingTokens = "L2 lock fencing tokens"
    /// Once faults stop, no table names a process that is gone: its locks
    /// passed to the next waiters.
    case l3PassOn = "L3 lock passes on"
    /// Real time: a lock's holder (at its own node) has ended its hold
    /// before another is told it holds the lock, unless it was paused.
    case l4RealTime = "L4 lock real-time exclusion"
    /// Work queues (docs/patterns.md, "Work queues"): every assignment of a
    /// queue message names one member, the same at every process, and a
    /// member of a live process (in the assigning process's view).
    case q1OneCoordinator = "Q1 queue one coordinator"
    /// No queue message is lost: after the drain every queue table is empty
    /// and every message a process of the final view assigned was acked,
    /// once per process.
    case q2NoneLost = "Q2 queue none lost"
    /// After its ack, a queue message is never assigned again.
    case q3AckedStaysAcked = "Q3 queue acked stays acked"
    public static func < (a: Property, b: Property) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

public struct Violation: Hashable, Sendable, CustomStringConvertible {
    public var property: Property
    public var detail: String
    public var events: [TraceEvent]
    public var description: String {
        "\(property.rawValue): \(detail)\n" + events.prefix(8).map { "    \($0)" }.joined(separator: "\n")
    }
}

/// Checks P1–P10 over a trace (TigerBeetle's state checker: the trace is
/// the only input, so a broken trace fed by a test is judged the same way).
/// Returns the first violation per property, in trace order.
public struct Checker: Sendable {
    public init() {}

    public func check(_ trace: [TraceEvent], final: FinalState? = nil) -> [Violation] {
        var found: [Property: Violation] = [:]
        func report(_ p: Property, _ d: String, _ e: [TraceEvent]) {
            if found[p] == nil { found[p] = Violation(property: p, detail: d, events: e) }
        }
        var published: [UInt64: TraceEvent] = [:]
        var installs: [ProcessID: [(ClusterView, TraceEvent)]] = [:]
        var viewMembers: [ViewID: (ClusterView, TraceEvent)] = [:]
        // Group views: one member list per (pattern, id), ids never going back at a process.
        var groupViewMembers: [String: [UInt64: ([ProcessID], TraceEvent)]] = [:]
        var groupViewLast: [ProcessID: [String: (UInt64, TraceEvent)]] = [:]
        // Per process and view: live deliveries in order.
        var live: [ProcessID: [ViewID: [(MessageID, TraceEvent)]]] = [:]
        var seenPublish: [ProcessID: [PublishID: TraceEvent]] = [:]
        var groupSeen: [ProcessID: [String: Set<UInt64>]] = [:]
        var fifoLast: [ProcessID: [String: [PublishKey: (UInt64, TraceEvent)]]] = [:]
        // Idempotent publish: what each number carried; acceptances per
        // process and per view; duplicate answers.
        var idempotentOf: [UInt64: IdempotentKey] = [:]
        var acceptedAt: [ProcessID: [IdempotentKey: TraceEvent]] = [:]
        var acceptedInView: [ViewID: [IdempotentKey: (UInt64, TraceEvent)]] = [:]
        var acceptances: [(ProcessID, ViewID?, IdempotentKey, UInt64, TraceEvent)] = []
        var answers: [(ProcessID, ViewID?, IdempotentKey, UInt64, TraceEvent)] = []
        // Work queues: the member of each (queue, key, index); per process
        // the last index of each key and what it acked; keys acked anywhere;
        // keys assigned per process.
        var queueAssignments: [(ProcessID, ViewID?, QueueKeyIndex, QueueMember, TraceEvent)] = []
        var queueLastIndex: [ProcessID: [QueueEntryKey: UInt32]] = [:]
        var queueAcked: [ProcessID: [QueueEntryKey: TraceEvent]] = [:]
        var queueAckedAnywhere: Set<QueueEntryKey> = []
        var queueAssigned: [ProcessID: [QueueEntryKey: TraceEvent]] = [:]

        for e in trace {
            switch e {
            case .queueAssign(_, let p, let view, let q, let key, let index, let member, _, _):
                let entry = QueueEntryKey(queue: q, key: key)
                queueAssignments.append((p, view, QueueKeyIndex(entry: entry, index: index), member, e))
                if let view, let v = viewMembers[view], !v.0.contains(member.process) {
                    report(.q1OneCoordinator, "\(p) assigned \(q) \(key) to \(member), whose process is not in \(view)", [v.1, e])
                }
                if let last = queueLastIndex[p]?[entry], last >= index {
                    report(.q1OneCoordinator, "\(p) assigned \(q) \(key) as assignment \(index) after \(last)", [e])
                }
                queueLastIndex[p, default: [:]][entry] = index
                if let ack = queueAcked[p]?[entry] {
                    report(.q3AckedStaysAcked, "\(p) assigned \(q) \(key) again after its ack", [ack, e])
                }
                queueAssigned[p, default: [:]][entry] = e
            case .queueAcked(_, let p, let q, let key):
                let entry = QueueEntryKey(queue: q, key: key)
                if let first = queueAcked[p]?[entry] {
                    report(.q2NoneLost, "\(p) acked \(q) \(key) twice", [first, e])
                }
                queueAcked[p, default: [:]][entry] = e
                queueAckedAnywhere.insert(entry)
            case .publish(_, _, _, let n, _, _):
                published[n] = e
            case .install(_, let p, let v):
                if !v.contains(p) { report(.p1SelfInclusion, "\(p) installed \(v) without itself", [e]) }
                if let last = installs[p]?.last, !(last.0.id < v.id) {
                    report(.p2ViewAgreement, "\(p) installed \(v.id) after \(last.0.id)", [last.1, e])
                }
                if let other = viewMembers[v.id], other.0.members != v.members {
                    report(.p2ViewAgreement, "view \(v.id) installed with two member lists", [other.1, e])
                } else if viewMembers[v.id] == nil {
                    viewMembers[v.id] = (v, e)
                }
                installs[p, default: []].append((v, e))
            case .groupView(_, let p, let pattern, let id, let members):
                if !members.contains(p) { report(.p1SelfInclusion, "\(p) reported group view \(pattern)#\(id) without itself", [e]) }
                if let other = groupViewMembers[pattern]?[id], other.0 != members {
                    report(.p2ViewAgreement, "group \(pattern) view \(id) reported with two member lists", [other.1, e])
                } else if groupViewMembers[pattern]?[id] == nil {
                    groupViewMembers[pattern, default: [:]][id] = (members, e)
                }
                if let last = groupViewLast[p]?[pattern], last.0 > id {
                    report(.p2ViewAgreement, "\(p) reported group \(pattern) view \(id) after view \(last.0)", [last.1, e])
                }
                groupViewLast[p, default: [:]][pattern] = (id, e)
            case .deliver(_, let p, let view, let id, let pub, let session, let n, _, let groups, let after):
                if published[n] == nil { report(.p5Integrity, "#\(n) delivered at \(p) but never published", [e]) }
                if !after {
                    if view != id.view {
                        report(.p4SendingView, "\(id) sent in \(id.view) delivered at \(p) in \(view.map(\.description) ?? "no view")", [e])
                    }
                    if let prior = seenPublish[p]?[pub] {
                        report(.p5Integrity, "\(pub) delivered twice at \(p)", [prior, e])
                    }
                    seenPublish[p, default: [:]][pub] = e
                    live[p, default: [:]][id.view, default: []].append((id, e))
                }
                for g in groups {
                    if groupSeen[p]?[g]?.contains(n) ?? false {
                        report(.p5Integrity, "#\(n) delivered twice to \(g) at \(p)", [e])
                    }
                    groupSeen[p, default: [:]][g, default: []].insert(n)
                    let key = PublishKey(origin: pub.origin, session: session)
                    if let last = fifoLast[p]?[g]?[key], last.0 > n {
                        report(.p6Fifo, "at \(p) in \(g): #\(n) after #\(last.0) of the same session", [last.1, e])
                    }
                    fifoLast[p, default: [:]][g, default: [:]][key] = (n, e)
                }
            case .checkpoint(_, let p, let g, let numbers):
                groupSeen[p, default: [:]][g] = Set(numbers)
                fifoLast[p, default: [:]][g] = [:]
            case .groupLeft(_, let p, let g):
                groupSeen[p]?[g] = nil
                fifoLast[p]?[g] = nil
            case .safeCheck(_, let p, let id, let missing):
                if !missing.isEmpty {
                    report(.p8Safe, "safe \(id) delivered or acked at \(p) while \(missing) did not hold it", [e])
                }
            case .idempotent(_, _, let n, let producer, let sequence):
                idempotentOf[n] = IdempotentKey(producer: producer, sequence: sequence)
            case .accepted(_, let p, let view, let producer, let sequence, let n, _):
                let key = IdempotentKey(producer: producer, sequence: sequence)
                if idempotentOf[n] != key {
                    report(.i2Agreement, "#\(n) accepted at \(p) as \(key) but published as \(idempotentOf[n].map(\.description) ?? "no idempotent record")", [e])
                }
                if let prior = acceptedAt[p]?[key] {
                    report(.i1AtMostOnce, "\(key) accepted twice at \(p)", [prior, e])
                }
                acceptedAt[p, default: [:]][key] = e
                if let view {
                    if let other = acceptedInView[view]?[key], other.0 != n {
                        report(.i2Agreement, "in view \(view) \(key) accepted as #\(other.0) and as #\(n)", [other.1, e])
                    } else if acceptedInView[view]?[key] == nil {
                        acceptedInView[view, default: [:]][key] = (n, e)
                    }
                }
                acceptances.append((p, view, key, n, e))
            case .retryAnswered(_, let p, let view, let producer, let sequence, _, _):
                if case .retryAnswered(_, _, _, _, _, _, let original) = e {
                    answers.append((p, view, IdempotentKey(producer: producer, sequence: sequence), original, e))
                }
            case .ack, .rejoined, .fault, .lockGrant, .lockReleased, .lockHolder:
                break
            }
        }

        // P3: processes that install V then V' delivered the same set in V.
        var bySuccession: [Succession: [(ProcessID, Set<MessageID>, TraceEvent)]] = [:]
        for (p, list) in installs {
            for i in 0..<(list.count - 1) {
                let v = list[i].0.id
                let ids = Set((live[p]?[v] ?? []).map(\.0))
                bySuccession[Succession(from: v, to: list[i + 1].0.id), default: []].append((p, ids, list[i + 1].1))
            }
        }
        for (s, members) in bySuccession.sorted(by: { $0.key < $1.key }) {
            let sorted = members.sorted { $0.0 < $1.0 }
            for m in sorted.dropFirst() where m.1 != sorted[0].1 {
                let diff = m.1.symmetricDifference(sorted[0].1).sorted().prefix(3)
                report(.p3VirtualSynchrony, "\(sorted[0].0) and \(m.0) moved \(s.from) → \(s.to) with different sets (e.g. \(Array(diff)))", [sorted[0].2, m.2])
            }
        }

        // P7: common total/safe messages of a view in the same order.
        var ordered: [ViewID: [(ProcessID, [(MessageID, TraceEvent)])]] = [:]
        for (p, views) in live {
            for (v, list) in views {
                let o = list.filter {
                    if case .deliver(_, _, _, _, _, _, _, let l, _, _) = $0.1 { return l.isTotallyOrdered }
                    return false
                }
                if !o.isEmpty { ordered[v, default: []].append((p, o)) }
            }
        }
        for (_, procs) in ordered.sorted(by: { $0.key < $1.key }) {
            let ps = procs.sorted { $0.0 < $1.0 }
            for i in 0..<ps.count {
                let pos = Dictionary(uniqueKeysWithValues: ps[i].1.enumerated().map { ($1.0, $0) })
                for j in (i + 1)..<ps.count {
                    var last = -1
                    var lastEvent: TraceEvent?
                    for (id, e) in ps[j].1 {
                        guard let k = pos[id] else { continue }
                        if k < last {
                            report(.p7TotalOrder, "\(ps[i].0) and \(ps[j].0) deliver \(id) in different orders", [lastEvent!, e])
                            break
                        }
                        last = k
                        lastEvent = e
                    }
                }
            }
        }

        // I2 across views. An acceptance is in the primary history when its
        // process went on to install a later view (P3: every survivor
        // delivered the same messages in the earlier one) or ended the run
        // in the final view. One made by a process that then crashed, or was
        // excluded and rejoined as a new incarnation, may concern a message
        // the primary never delivered (virtual synchrony lets a member that
        // leaves deliver what the survivors do not); it is checked within
        // its view only.
        func inPrimaryHistory(_ p: ProcessID, _ view: ViewID?) -> Bool {
            guard let view else { return false }
            if installs[p]?.contains(where: { $0.0.id > view }) ?? false { return true }
            if let f = final?.views[p], let v = f, v.id == view { return true }
            return false
        }
        var committed: [IdempotentKey: (UInt64, TraceEvent)] = [:]
        for (p, view, key, n, e) in acceptances where inPrimaryHistory(p, view) {
            if let other = committed[key], other.0 != n {
                report(.i2Agreement, "\(key) accepted as #\(other.0) and as #\(n) in the primary history", [other.1, e])
            } else if committed[key] == nil {
                committed[key] = (n, e)
            }
        }
        // Q1 across processes, in the primary history (as I2): a process
        // cut off in a minority may deliver records the primary never does
        // (its own `total` records as the sequencer, say) and assign
        // differently before it rejoins as a new incarnation.
        var queueHolder: [QueueKeyIndex: (QueueMember, TraceEvent)] = [:]
        for (p, view, at, member, e) in queueAssignments where inPrimaryHistory(p, view) {
            if let other = queueHolder[at], other.0 != member {
                report(.q1OneCoordinator, "\(at.entry) assignment \(at.index) names \(other.0) and \(member) in the primary history", [other.1, e])
            } else if queueHolder[at] == nil {
                queueHolder[at] = (member, e)
            }
        }
        // I3: a duplicate answer names a publish of the same record that was
        // accepted; given in the primary history, the one accepted there.
        for (p, view, key, original, e) in answers {
            if idempotentOf[original] != key || !acceptances.contains(where: { $0.2 == key && $0.3 == original }) {
                report(.i3RetryAnswer, "a retry of \(key) at \(p) answered with #\(original), which was never accepted as \(key)", [e])
            } else if inPrimaryHistory(p, view), let c = committed[key], c.0 != original {
                report(.i3RetryAnswer, "a retry of \(key) at \(p) answered with #\(original), but #\(c.0) was accepted", [c.1, e])
            }
        }

        LockChecker.check(trace, final: final, inPrimaryHistory: inPrimaryHistory, report: report)

        if let final {
            // Q2: nothing is left unacked after the drain, and what the
            // final view's processes assigned was acked.
            for (p, left) in final.queueLeftovers.sorted(by: { $0.key < $1.key }) where !left.isEmpty {
                report(.q2NoneLost, "\(p) still holds \(left.count) unacked queue messages after the drain: \(left.prefix(4))", [])
                break
            }
            if let v = final.views.values.first, let view = v {
                for p in view.members.sorted() {
                    for (entry, e) in (queueAssigned[p] ?? [:]).sorted(by: { $0.key < $1.key }) where !queueAckedAnywhere.contains(entry) {
                        report(.q2NoneLost, "\(entry) assigned at \(p) was never acked", [e])
                        break
                    }
                }
            }
            // I2: the live processes' idempotence tables agree.
            let tables = final.idempotenceTables.sorted { $0.key < $1.key }
            for t in tables.dropFirst() where t.value != tables[0].value {
                let keys = Set(t.value.keys).union(tables[0].value.keys).filter { t.value[$0] != tables[0].value[$0] }.sorted().prefix(3)
                report(.i2Agreement, "final idempotence tables of \(tables[0].key) and \(t.key) differ on \(Array(keys))", [])
                break
            }
            // P9: one view with every live process, and every probe delivered.
            let liveProcs = final.views.keys.sorted()
            let views = Set(final.views.values.map { $0?.id })
            if views.count != 1 || final.views.values.contains(where: { $0 == nil }) {
                report(.p9Liveness, "after the faults stopped the live processes \(liveProcs) are in views \(final.views.values.map { $0.map(\.description) ?? "none" })", [])
            } else if let v = final.views.values.first!, Set(v.members) != Set(liveProcs) {
                report(.p9Liveness, "final view \(v) is not exactly the live processes \(liveProcs)", [])
            }
            for (n, got) in final.probes.sorted(by: { $0.key < $1.key }) where got != Set(liveProcs) {
                report(.p9Liveness, "probe #\(n) delivered at \(got.sorted()) of \(liveProcs)", published[n].map { [$0] } ?? [])
                break
            }
            // P10: members of a group hold the same state.
            var byPattern: [String: [(ProcessID, Set<UInt64>)]] = [:]
            for (p, states) in final.states {
                for (g, s) in states { byPattern[g, default: []].append((p, s)) }
            }
            for (g, holders) in byPattern.sorted(by: { $0.key < $1.key }) {
                let hs = holders.sorted { $0.0 < $1.0 }
                for h in hs.dropFirst() where h.1 != hs[0].1 {
                    let diff = h.1.symmetricDifference(hs[0].1).sorted().prefix(5)
                    report(.p10StateTransfer, "group \(g): \(hs[0].0) holds \(hs[0].1.count), \(h.0) holds \(h.1.count) (differ on \(Array(diff)))", [])
                    break
                }
            }
        }
        return found.values.sorted { $0.property < $1.property }
    }
}

struct QueueEntryKey: Hashable, Comparable, CustomStringConvertible {
    var queue: String
    var key: QueueMessageKey
    static func < (a: Self, b: Self) -> Bool { (a.queue, a.key) < (b.queue, b.key) }
    var description: String { "\(queue) \(key)" }
}

struct QueueKeyIndex: Hashable {
    var entry: QueueEntryKey
    var index: UInt32
}

struct IdempotentKey: Hashable, CustomStringConvertible {
    var producer: String
    var sequence: UInt64
    var description: String { "\(producer)/\(sequence)" }
}

struct PublishKey: Hashable {
    var origin: ProcessID
    var session: UInt64
}

struct Succession: Hashable, Comparable {
    var from: ViewID
    var to: ViewID
    static func < (a: Succession, b: Succession) -> Bool { (a.from, a.to) < (b.from, b.to) }
}
