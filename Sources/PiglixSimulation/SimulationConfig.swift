import PiglixGroups

/// A kind of fault the simulator injects. The order of the cases is the
/// order of the random choice among the enabled ones: append new kinds at
/// the end, or existing seeds replay differently.
public enum Fault: String, CaseIterable, Hashable, Sendable {
    /// A node crashes and restarts later as a new incarnation.
    case crash
    /// A node stops beyond the suspicion timeout, then resumes.
    case pause
    /// The cluster splits in two sides, then heals.
    case partition
    /// A crash with an immediate restart, and a subscription change.
    case churn
    /// A joiner's application cannot read a checkpoint chunk: the transfer
    /// restarts from another member.
    case corruptChunk
    /// A majority of the nodes crash at once and restart soon after: they
    /// vote for their old seats from their disks (StandIn.swift), so the
    /// cluster forms a primary view again. On half of the seeds.
    case majorityCrash
    /// Idempotent publishes (a producer and a sequence number, docs/patterns.md)
    /// retried on the same or another node, at random and after the crash
    /// of the node that took them; every node keeps the broker's
    /// idempotence table, carried to joiners by state transfer
    /// (Idempotence.swift). Checked by I1–I3.
    case retry
    /// Lock requests and releases (docs/patterns.md, "Locks") at random
    /// nodes; every node keeps the broker's `LockTable` on `$piglix.locks`,
    /// carried to joiners by state transfer, with the broker's lease
    /// (Locks.swift). Checked by L1–L4.
    case locks
    /// Work queues (docs/patterns.md, "Work queues"): members join, leave
    /// and ack on random nodes; every node keeps the broker's queue table,
    /// carried to joiners by state transfer (Queues.swift). Checked by Q1–Q3.
    case queue
}

/// Which faults a run injects.
public struct FaultSet: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ fault: Fault) { self.init(rawValue: 1 << Fault.allCases.firstIndex(of: fault)!) }
    public init(_ faults: some Sequence<Fault>) {
        self.init()
        for f in faults { insert(FaultSet(f)) }
    }
    public static let all = FaultSet(Fault.allCases)
    public static let none: FaultSet = []
    /// Every fault but `retry`: what the regression seeds found before
    /// idempotent publish existed were found with (they replay unchanged).
    /// (Nor `locks` nor `queue`, added later.)
    public static let classic = FaultSet.all.subtracting(FaultSet([.retry, .locks, .queue]))

    public func contains(_ fault: Fault) -> Bool { contains(FaultSet(fault)) }
    /// The enabled faults, in `Fault.allCases` order.
    public var faults: [Fault] { Fault.allCases.filter { contains($0) } }

    /// Parses `all`, `classic` (all but `retry` and `queue`), `none`, or a comma list of fault names (`crash,pause`);
    /// nil for an unknown name.
    public init?(list: String) {
        self.init()
        for name in list.split(separator: ",") {
            switch name {
            case "all": formUnion(.all)
            case "classic": formUnion(.classic)
            case "none": break
            default:
                guard let f = Fault(rawValue: String(name)) else { return nil }
                insert(FaultSet(f))
            }
        }
    }

    /// The inverse of `init(list:)`.
    public var list: String {
        if self == .all { return "all" }
        if self == .classic { return "classic" }
        if isEmpty { return "none" }
        return faults.map(\.rawValue).joined(separator: ",")
    }
}

/// The knobs of one simulated run.
public struct SimulationConfig: Hashable, Sendable {
    public var seed: UInt64
    public var nodes: Int
    public var faults: FaultSet = .all
    /// Simulated ticks with faults and traffic, before the quiet phase.
    public var durationTicks: UInt64 = 2_500
    public var publishesPerNode: Int = 25
    public var latencyTicks: ClosedRange<Int> = 1...4
    public var jitterTicks: ClosedRange<Int> = 0...3
    public var faultCount: ClosedRange<Int> = 2...5
    /// With `retry`: idempotent records first published per run, and how
    /// many times each is retried (besides the retries a crash triggers).
    public var idempotentRecords: ClosedRange<Int> = 15...40
    public var retriesPerRecord: ClosedRange<Int> = 0...3
    /// With `locks`: lock requests per run.
    public var lockRequests: ClosedRange<Int> = 10...30
    /// Small, so retries past the window (409) happen too.
    public var idempotence = IdempotenceLimits(windowSequences: 8, producersMax: 64)
    public var settings: GroupSettings = {
        var s = GroupSettings()
        s.heartbeatIntervalTicks = 10
        s.suspicionTimeoutTicks = 60
        s.deliverUnmatched = true
        s.unstableMessagesMax = 64
        // Eager acks by receipt count run under faults too, not only heartbeats.
        s.ackEveryMessages = 8
        s.pendingPublishesMax = 256
        return s
    }()
    public init(seed: UInt64, nodes: Int, faults: FaultSet = .all) {
        self.seed = seed
        self.nodes = nodes
        self.faults = faults
    }
}
