/// This process's part in the change of its current view (Flush.swift).
/// Lives in `Member`, so a new view starts at `.none` by construction.
/// `indirect`: one word, so the per-message checks (`isFlushing`, the
/// claimed digest) do not copy the promise and the reports.
indirect enum FlushState: Sendable {
    /// Sending and delivering in the view.
    case none
    /// Reported to a flush: no sending, no delivering in the view until
    /// the install (or the end of the view).
    case reported(FlushPromise)
    /// Reported to a flush and coordinating one, as the acting coordinator.
    /// The promise may be to a higher ballot than the one coordinated.
    case coordinating(FlushPromise, CoordinatorFlush)

    var isFlushing: Bool {
        if case .none = self { return false }
        return true
    }

    var promise: FlushPromise? {
        switch self {
        case .none: nil
        case .reported(let p), .coordinating(let p, _): p
        }
    }

    var coordinator: CoordinatorFlush? {
        if case .coordinating(_, let c) = self { return c }
        return nil
    }

    /// Updates the promise, keeping the coordination.
    mutating func setPromise(_ p: FlushPromise) {
        if case .coordinating(_, let c) = self {
            self = .coordinating(p, c)
        } else {
            self = .reported(p)
        }
    }

    /// Replaces the coordination, keeping the promise; nothing when not
    /// coordinating.
    mutating func setCoordinator(_ c: CoordinatorFlush) {
        if case .coordinating(let p, _) = self { self = .coordinating(p, c) }
    }

    /// Stops coordinating, keeping the promise.
    mutating func dropCoordinator() {
        if case .coordinating(let p, _) = self { self = .reported(p) }
    }
}

/// Paxos acceptor state of a process that reported to a flush of its view.
struct FlushPromise: Sendable {
    /// No ballot below this one is accepted.
    var promised: ViewID
    /// The digest at this process's first flush report in the view. While
    /// flushing it claims no more than that to the stability computation:
    /// reports are taken at different times, and a message must not become
    /// stable (and be collected) on the strength of a receipt that no report
    /// shows.
    let frozenDigest: Digest
    /// The install accepted for the view's change, under its ballot.
    var accepted: (ballot: ViewID, install: Install)?
}

/// The acting coordinator's side of a flush (steps 1–3 in Flush.swift).
struct CoordinatorFlush: Sendable {
    var previous: ViewID
    var proposal: ClusterView
    var survivors: [ProcessID]
    var reports: [ProcessID: FlushReport] = [:]
    var sentAt: Tick
    /// Phase 2: the install proposed and who accepted it.
    var value: Install?
    var accepts: Set<ProcessID> = []
    /// Restarted nodes invited to vote for their old seats (StandIn.swift):
    /// joiner → seat, and the promises received.
    var standIns: [ProcessID: ProcessID] = [:]
    var standInPromises: [ProcessID: StandInPromise] = [:]
}
