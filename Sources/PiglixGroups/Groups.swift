import PiglixTopics

/// The lightweight group table every member derives from the total order:
/// pattern → members in join order, each with its state-transfer readiness.
/// Joins, leaves and readiness are `total` control messages, so every node
/// applies them at the same point; departures from the cluster view are
/// applied at install. Costs memory per group, no protocol round per group.
///
/// Group view ids: a change of a group's member list is numbered by the
/// cluster view it happens in and its place among that view's group changes:
/// id = epoch × 2^32 + change (`GroupViewID`). Within a cluster view every
/// process that applies a change applies the same changes before it (joins
/// and leaves follow the view's total order; departures are applied first
/// thing at install, in pattern order), so one (group, id) names one member
/// list on every node (P2 for groups). A plain counter would not do: a
/// process excluded from the next view may have delivered a join past the
/// flush cut and numbered it, while the survivors give that number to
/// another change. Ids grow with every change, and a group that empties and
/// forms again gets a new, higher id.
struct GroupTable: Sendable {
    private(set) var table: [TopicPattern: GroupRecord] = [:]
    /// The cluster view's epoch and the group changes applied in it so far.
    private var epoch: UInt64 = 0
    private var changes: UInt64 = 0
    var count: Int { table.count }

    init() {}
    init(records: [GroupRecord]) {
        for r in records { table[r.pattern] = r }
    }

    /// A cluster view is installed: its group changes are numbered from 1.
    mutating func beginView(epoch: UInt64) {
        self.epoch = epoch
        changes = 0
    }

    private mutating func issueView(_ r: inout GroupRecord) {
        changes += 1
        r.view = GroupViewID.make(epoch: epoch, change: changes)
    }

    func members(_ p: TopicPattern) -> [ProcessID]? { table[p]?.members }
    func record(_ p: TopicPattern) -> GroupRecord? { table[p] }

    mutating func join(_ p: TopicPattern, _ who: ProcessID) {
        var r = table[p] ?? GroupRecord(pattern: p, members: [], ready: [], view: 0)
        guard !r.members.contains(who) else { return }
        r.members.append(who)
        r.ready.append(false)
        issueView(&r)
        table[p] = r
    }
    mutating func leave(_ p: TopicPattern, _ who: ProcessID) {
        guard var r = table[p], let i = r.members.firstIndex(of: who) else { return }
        r.members.remove(at: i)
        r.ready.remove(at: i)
        issueView(&r)
        table[p] = r.members.isEmpty ? nil : r
    }
    mutating func setReady(_ p: TopicPattern, _ who: ProcessID) {
        guard var r = table[p], let i = r.members.firstIndex(of: who) else { return }
        r.ready[i] = true
        table[p] = r
    }
    /// Removes members not in `view`; returns the patterns that changed, sorted.
    @discardableResult
    mutating func removeDeparted(keeping view: ClusterView) -> [TopicPattern] {
        let keep = Set(view.members)
        var changed: [TopicPattern] = []
        for p in table.keys.sorted(by: { $0.name < $1.name }) {
            var r = table[p]!
            var i = 0
            var touched = false
            while i < r.members.count {
                if keep.contains(r.members[i]) {
                    i += 1
                } else {
                    r.members.remove(at: i)
                    r.ready.remove(at: i)
                    touched = true
                }
            }
            if touched {
                changed.append(p)
                issueView(&r)
                table[p] = r.members.isEmpty ? nil : r
            }
        }
        return changed
    }
    /// Sorted by pattern name so every node encodes the same install.
    var records: [GroupRecord] { table.values.sorted { $0.pattern.name < $1.pattern.name } }
}

/// This node's side of a group it subscribes to.
enum LocalGroup: Sendable {
    /// Join sent or pending; deliveries for the pattern are buffered.
    case joining(Transfer)
    /// Join delivered; waiting for a checkpoint.
    case awaiting(Transfer)
    /// State received; deliveries go to subscribers.
    case active

    var isActive: Bool {
        if case .active = self { return true }
        return false
    }
}

extension GroupNode {
    mutating func joinGroup(_ p: TopicPattern) {
        wanted.insert(p)
        guard inView, incarnation.local[p] == nil, !waitsForPrerequisite(p) else { return }
        incarnation.local[p] = .joining(Transfer())
        incarnation.transferring.append(p)
        publishControl(.groupJoin(p))
    }

    mutating func leaveGroup(_ p: TopicPattern) {
        wanted.remove(p)
        guard let state = incarnation.local[p] else { return }
        if state.isActive { incarnation.trie.remove(p, p) }
        incarnation.local[p] = nil
        incarnation.cuts[p] = nil
        incarnation.skip[p] = nil
        incarnation.transferring.removeAll { $0 == p }
        if inView { publishControl(.groupLeave(p)) }
    }

    /// True while `p` must not be joined yet: another group is the
    /// prerequisite (`GroupSettings.prerequisiteGroup`) and is not active
    /// here. Its join is sent once it is (`joinDeferredGroups`), so `p`'s
    /// buffer, and every delivery it gets, come after the prerequisite's
    /// state is complete.
    func waitsForPrerequisite(_ p: TopicPattern) -> Bool {
        guard let gate = settings.prerequisiteGroup, gate != p else { return false }
        return !(incarnation.local[gate]?.isActive ?? false)
    }

    /// The prerequisite group went active: join the groups wanted since.
    mutating func joinDeferredGroups() {
        for p in wanted.sorted(by: { $0.name < $1.name }) where incarnation.local[p] == nil { joinGroup(p) }
    }

    static func matches(_ dest: Destination, _ p: TopicPattern) -> Bool {
        switch dest {
        case .topic(let t): p.matches(t)
        case .group(let q): q == p
        }
    }

    mutating func deliverPublish(_ m: DataMessage, _ dest: Destination, view: ViewID) {
        var targets: [TopicPattern]
        switch dest {
        case .topic(let t):
            if incarnation.trie.isEmpty {
                targets = []
            } else if incarnation.trie.generation == incarnation.lastGeneration && t.name == incarnation.lastTopic {
                targets = incarnation.lastMatch
            } else {
                targets = incarnation.trie.match(t)
                incarnation.lastTopic = t.name
                incarnation.lastGeneration = incarnation.trie.generation
                incarnation.lastMatch = targets
            }
        case .group(let p): targets = (incarnation.local[p]?.isActive ?? false) ? [p] : []
        }
        var skipped: [TopicPattern] = []
        if !incarnation.cuts.isEmpty {
            // A live message the group's checkpoint cut covers: its state
            // holds it (the provider had delivered it before this node).
            // Named matched or not, as the skip list's: the work queue table
            // is fed by unmatched deliveries (seed 403651: the provider, on
            // the other side of a partition, had delivered two messages and
            // a queue's creation that the joiner delivered live afterwards).
            for (p, cut) in incarnation.cuts where cut.covers(m.id) { skipped.append(p) }
        }
        if !incarnation.skip.isEmpty {
            // Every pattern whose skip list names it, matched or not (the
            // application may keep state for a group from unmatched
            // deliveries).
            for p in incarnation.skip.keys where incarnation.skip[p]!.remove(m.publish) != nil && !skipped.contains(p) {
                skipped.append(p)
            }
        }
        if !skipped.isEmpty {
            // In name order.
            skipped.sort { $0.name < $1.name }
            targets.removeAll { skipped.contains($0) }
        }
        if !incarnation.transferring.isEmpty { bufferForTransfers(m, dest) }
        if !targets.isEmpty || settings.deliverUnmatched {
            out.append(.deliver(Delivery(message: m, view: view, groups: targets, afterCheckpoint: false, skippedGroups: skipped)))
        }
    }

    mutating func groupJoined(_ p: TopicPattern, by who: ProcessID) {
        incarnation.groups.join(p, who)
        if who == me, case .joining(let t) = incarnation.local[p] {
            incarnation.local[p] = .awaiting(t)
            evaluateTransfer(p, force: true)
        }
        announceGroup(p)
    }

    mutating func groupLeft(_ p: TopicPattern, by who: ProcessID) {
        incarnation.groups.leave(p, who)
        announceGroup(p)
        if case .awaiting = incarnation.local[p] { evaluateTransfer(p, force: false) }
    }

    mutating func groupReadied(_ p: TopicPattern, by who: ProcessID) {
        incarnation.groups.setReady(p, who)
        if case .awaiting = incarnation.local[p] { evaluateTransfer(p, force: false) }
    }

    mutating func announceGroup(_ p: TopicPattern) {
        guard incarnation.local[p] != nil, let log, let record = incarnation.groups.record(p), record.members.contains(me) else { return }
        out.append(.installGroupView(GroupView(pattern: p, id: record.view, clusterView: log.view.id, members: record.members)))
    }
}
