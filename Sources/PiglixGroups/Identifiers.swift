import PiglixTopics

/// Time as the core sees it: an opaque, monotonically increasing tick count
/// supplied by the caller (raft's "ticks"). The shell decides what a tick is
/// (the NIO transport uses 1 ms; the simulator uses simulated microseconds).
public typealias Tick = UInt64

/// A broker node's stable name, the same across restarts. The transport maps
/// it to an address.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "n\(rawValue)" }
}

/// One run of a node: a node that restarts, or that was excluded from the
/// primary view and rejoins, does so as a new incarnation (Isis: a process
/// that was declared failed never comes back under its old name).
public struct ProcessID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var node: NodeID
    public var incarnation: UInt64
    public init(node: NodeID, incarnation: UInt64) {
        self.node = node
        self.incarnation = incarnation
    }
    public static func < (a: ProcessID, b: ProcessID) -> Bool {
        (a.node, a.incarnation) < (b.node, b.incarnation)
    }
    public var description: String { "\(node)#\(incarnation)" }
}

/// A cluster view's identity. `epoch` grows with every view-change attempt;
/// `coordinator` breaks ties between concurrent attempts, so one id names
/// one member list (P2). Ordered by (epoch, coordinator).
public struct ViewID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var epoch: UInt64
    public var coordinator: ProcessID
    public init(epoch: UInt64, coordinator: ProcessID) {
        self.epoch = epoch
        self.coordinator = coordinator
    }
    public static func < (a: ViewID, b: ViewID) -> Bool {
        (a.epoch, a.coordinator) < (b.epoch, b.coordinator)
    }
    public var description: String { "v\(epoch)@\(coordinator)" }
}

/// The identity of a multicast inside the cluster: the view it was sent in,
/// the rank of its origin in that view and the origin's sequence number in
/// that view (1, 2, …). Unique cluster-wide and totally ordered per origin,
/// so a broker can use it as a resume position on any node of the view.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var view: ViewID
    public var origin: UInt32
    public var seq: UInt64
    public init(view: ViewID, origin: UInt32, seq: UInt64) {
        self.view = view
        self.origin = origin
        self.seq = seq
    }
    public static func < (a: MessageID, b: MessageID) -> Bool {
        (a.view, a.origin, a.seq) < (b.view, b.origin, b.seq)
    }
    public var description: String { "\(view)/r\(origin).\(seq)" }
}

/// The identity of one publish, stable across the re-sends a view change may
/// cause (a message cut by a flush is sent again in the next view under a new
/// `MessageID` but the same `PublishID`). `seq` grows by one per publish of
/// the origin process, so it also orders a publisher session's messages.
public struct PublishID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var origin: ProcessID
    public var seq: UInt64
    public init(origin: ProcessID, seq: UInt64) {
        self.origin = origin
        self.seq = seq
    }
    public static func < (a: PublishID, b: PublishID) -> Bool { (a.origin, a.seq) < (b.origin, b.seq) }
    public var description: String { "\(origin):\(seq)" }
}

/// Where a publish goes: a topic (every group whose pattern matches) or one
/// group named by its pattern.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    case topic(Topic)
    case group(TopicPattern)
    public var description: String {
        switch self {
        case .topic(let t): "topic:\(t.name)"
        case .group(let p): "group:\(p.name)"
        }
    }
}
