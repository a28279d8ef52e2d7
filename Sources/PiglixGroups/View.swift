import PiglixTopics

/// A cluster view (Birman, "Exploiting virtual synchrony", 1987): an id and
/// the member list, oldest member first. `members[0]` coordinates the view
/// and is its sequencer for `total` and `safe` messages.
public struct ClusterView: Hashable, Sendable, CustomStringConvertible {
    public var id: ViewID
    public var members: [ProcessID]
    public init(id: ViewID, members: [ProcessID]) {
        precondition(!members.isEmpty, "a view has at least one member")
        self.id = id
        self.members = members
    }
    public var coordinator: ProcessID { members[0] }
    public func rank(of process: ProcessID) -> Int? { members.firstIndex(of: process) }
    public func contains(_ process: ProcessID) -> Bool { members.contains(process) }
    /// True when `other` holds more than half of this view's members: the
    /// primary-component rule (Isis, Ricciardi & Birman 1991).
    public func isMajority(_ other: [ProcessID]) -> Bool {
        let kept = other.reduce(0) { $0 + (members.contains($1) ? 1 : 0) }
        return kept * 2 > members.count
    }
    public var description: String { "\(id)[\(members.map(\.description).joined(separator: ","))]" }
}

/// A lightweight group's view: the cluster view it belongs to and the nodes
/// holding at least one subscription with the pattern, in join order.
/// Derived by every node from the cluster's total order, so every node of a
/// view computes the same group views without a protocol round per group
/// (Glade, Birman & van Renesse, "Light-weight process groups in Isis", 1993).
/// A group view's id as one comparable number: the cluster view's epoch in
/// the high 32 bits, the change's number within that cluster view in the
/// low 32 (docs/protocol.md, "Cluster"). It stays exact in a JSON number
/// (2^53) up to epoch 2^21.
public enum GroupViewID {
    public static func make(epoch: UInt64, change: UInt64) -> UInt64 { epoch << 32 | (change & 0xFFFF_FFFF) }
    public static func epoch(_ id: UInt64) -> UInt64 { id >> 32 }
    public static func change(_ id: UInt64) -> UInt64 { id & 0xFFFF_FFFF }
}

public struct GroupView: Hashable, Sendable, CustomStringConvertible {
    public var pattern: TopicPattern
    /// The group view's own id: increasing, and one (pattern, id) names one
    /// member list on every node (`GroupTable`). What clients see as `view`.
    public var id: UInt64
    /// The cluster view this process is in when it reports the group view.
    public var clusterView: ViewID
    public var members: [ProcessID]
    public init(pattern: TopicPattern, id: UInt64, clusterView: ViewID, members: [ProcessID]) {
        self.pattern = pattern
        self.id = id
        self.clusterView = clusterView
        self.members = members
    }
    public var description: String { "\(pattern.name)#\(GroupViewID.epoch(id)).\(GroupViewID.change(id))@\(clusterView)[\(members.map(\.description).joined(separator: ","))]" }
}

/// A point in the delivery stream of a view: the view and, per origin rank,
/// how many of its messages have been delivered. Used as the state-transfer
/// cut (P10): a message belongs to a checkpoint taken at this position when
/// it was sent in an earlier view, or in this view at or below the count.
public struct StreamPosition: Hashable, Sendable, CustomStringConvertible {
    public var view: ViewID
    public var delivered: [UInt64]
    public init(view: ViewID, delivered: [UInt64]) {
        self.view = view
        self.delivered = delivered
    }
    public func covers(_ id: MessageID) -> Bool {
        if id.view < view { return true }
        if id.view > view { return false }
        let r = Int(id.origin)
        return r < delivered.count && id.seq <= delivered[r]
    }
    /// True when every message `other` covers is covered here too.
    public func isAtOrAfter(_ other: StreamPosition) -> Bool {
        if view != other.view { return view > other.view }
        for (a, b) in zip(delivered, other.delivered) where a < b { return false }
        return true
    }
    public var description: String { "\(view)\(delivered)" }
}
