import PiglixGroups
import PiglixTopics

/// One recorded event of a simulation run. Application payloads carry a
/// unique number (`number`), so the checker can tell what was published.
public enum TraceEvent: Hashable, Sendable, CustomStringConvertible {
    case publish(at: UInt64, process: ProcessID, session: UInt64, number: UInt64, level: DeliveryLevel, destination: String)
    /// A delivery. `view` is the view the simulator saw the process install
    /// last; `groups` the local patterns.
    case deliver(at: UInt64, process: ProcessID, view: ViewID?, id: MessageID, publish: PublishID, session: UInt64, number: UInt64, level: DeliveryLevel, groups: [String], afterCheckpoint: Bool)
    case install(at: UInt64, process: ProcessID, view: ClusterView)
    /// A group view reported to the application (`installGroupView`).
    case groupView(at: UInt64, process: ProcessID, pattern: String, id: UInt64, members: [ProcessID])
    case ack(at: UInt64, process: ProcessID, number: UInt64, level: DeliveryLevel)
    /// At a `safe` delivery or ack: the members of the view that did not
    /// hold the message at that moment (must be empty: P8).
    case safeCheck(at: UInt64, process: ProcessID, id: MessageID, missing: [ProcessID])
    case checkpoint(at: UInt64, process: ProcessID, pattern: String, numbers: [UInt64])
    case groupLeft(at: UInt64, process: ProcessID, pattern: String)
    case rejoined(at: UInt64, old: ProcessID, new: ProcessID)
    case fault(at: UInt64, String)
    /// Publish `number` is an idempotent record (follows its `publish`).
    case idempotent(at: UInt64, process: ProcessID, number: UInt64, producer: String, sequence: UInt64)
    /// The process's idempotence table decided the live delivery of
    /// `number` (sent as `id`) new: it was delivered to the application.
    case accepted(at: UInt64, process: ProcessID, view: ViewID?, producer: String, sequence: UInt64, number: UInt64, id: MessageID)
    /// Publish `number` was answered as a duplicate naming `original`, at
    /// entry or at its delivery.
    case retryAnswered(at: UInt64, process: ProcessID, view: ViewID?, producer: String, sequence: UInt64, number: UInt64, original: UInt64)
    /// A replica's lock table granted `lock` to `request` with `token`, in `view`.
    case lockGrant(at: UInt64, process: ProcessID, view: ViewID, lock: String, request: String, token: UInt64)
    /// A replica's lock table released the holder of `token`.
    case lockReleased(at: UInt64, process: ProcessID, lock: String, token: UInt64)
    /// At the requester's node: its client holds the lock (`held`), or its
    /// hold ended (released, lease, primary lost).
    case lockHolder(at: UInt64, process: ProcessID, lock: String, token: UInt64, held: Bool)
    /// The process's queue table assigned `key` (publish `number`) of
    /// `queue` to `member`, its `index`th assignment (1: the first).
    case queueAssign(
        at: UInt64, process: ProcessID, view: ViewID?, queue: String, key: QueueMessageKey, index: UInt32, member: QueueMember, number: UInt64,
        redelivered: Bool)
    /// An ack record removed `key` from the process's queue table.
    case queueAcked(at: UInt64, process: ProcessID, queue: String, key: QueueMessageKey)

    public var description: String {
        switch self {
        case .publish(let t, let p, let s, let n, let l, let d): "t=\(t) publish \(p) session \(s) #\(n) \(l) \(d)"
        case .deliver(let t, let p, let v, let id, let pub, _, let n, let l, let g, let a):
            "t=\(t) deliver \(p) in \(v.map(\.description) ?? "-") \(id) \(pub) #\(n) \(l) groups \(g)\(a ? " after-checkpoint" : "")"
        case .install(let t, let p, let v): "t=\(t) install \(p) \(v)"
        case .groupView(let t, let p, let pattern, let id, let m): "t=\(t) group-view \(p) \(pattern)#\(id) \(m)"
        case .ack(let t, let p, let n, let l): "t=\(t) ack \(p) #\(n) \(l)"
        case .safeCheck(let t, let p, let id, let m): "t=\(t) safe-check \(p) \(id) missing \(m)"
        case .checkpoint(let t, let p, let pat, let ns): "t=\(t) checkpoint \(p) \(pat) \(ns.count) messages"
        case .groupLeft(let t, let p, let pat): "t=\(t) leave \(p) \(pat)"
        case .rejoined(let t, let o, let n): "t=\(t) rejoin \(o) as \(n)"
        case .fault(let t, let f): "t=\(t) fault \(f)"
        case .idempotent(let t, let p, let n, let producer, let s): "t=\(t) idempotent \(p) #\(n) \(producer)/\(s)"
        case .accepted(let t, let p, let v, let producer, let s, let n, let id):
            "t=\(t) accept \(p) in \(v.map(\.description) ?? "-") \(producer)/\(s) #\(n) \(id)"
        case .retryAnswered(let t, let p, let v, let producer, let s, let n, let o):
            "t=\(t) duplicate-ack \(p) in \(v.map(\.description) ?? "-") \(producer)/\(s) #\(n) original #\(o)"
        case .lockGrant(let t, let p, let v, let lock, let r, let token): "t=\(t) lock-grant \(p) in \(v) \(lock) to \(r) token \(token)"
        case .lockReleased(let t, let p, let lock, let token): "t=\(t) lock-release \(p) \(lock) token \(token)"
        case .lockHolder(let t, let p, let lock, let token, let held): "t=\(t) lock-\(held ? "held" : "ended") at \(p) \(lock) token \(token)"
        case .queueAssign(let t, let p, let v, let q, let k, let i, let m, let n, let r):
            "t=\(t) queue-assign \(p) in \(v.map(\.description) ?? "-") \(q) \(k) #\(n) [\(i)] to \(m)\(r ? " redelivered" : "")"
        case .queueAcked(let t, let p, let q, let k): "t=\(t) queue-acked \(p) \(q) \(k)"
        }
    }
}

/// What the simulator observed at the end of a run, for P9 and P10.
public struct FinalState: Hashable, Sendable {
    /// Live processes and the view each had installed (nil: none).
    public var views: [ProcessID: ClusterView?] = [:]
    /// Probe messages published after the faults stopped, and which live
    /// processes delivered each.
    public var probes: [UInt64: Set<ProcessID>] = [:]
    /// Per live process, per active pattern, the application state.
    public var states: [ProcessID: [String: Set<UInt64>]] = [:]
    /// Per live process whose idempotence transfer completed, its table:
    /// `producer/sequence` to the original's number, inside the window.
    public var idempotenceTables: [ProcessID: [String: UInt64]] = [:]
    /// Per live process whose lock transfer completed: lock → holder
    /// (`owner#id@token`, or `-`) then waiters.
    public var lockTables: [ProcessID: [String: [String]]] = [:]
    /// Per live process whose queue transfer completed, after the drain:
    /// the unacked keys left in its queue table (`queue:key`).
    public var queueLeftovers: [ProcessID: [String]] = [:]
    public init() {}
}
