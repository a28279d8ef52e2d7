import PiglixGroups

/// The properties P1–P10 (docs/virtual-synchrony.md, "How each property is kept").
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

        for e in trace {
            switch e {
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
            case .ack, .rejoined, .fault:
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

        if let final {
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

struct PublishKey: Hashable {
    var origin: ProcessID
    var session: UInt64
}

struct Succession: Hashable, Comparable {
    var from: ViewID
    var to: ViewID
    static func < (a: Succession, b: Succession) -> Bool { (a.from, a.to) < (b.from, b.to) }
}
