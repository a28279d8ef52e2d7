/// A majority that restarts (docs/virtual-synchrony.md, "A majority that
/// restarts"). A node's vote in the flush of a view is a Paxos acceptor's:
/// a promise (no ballot below it) and at most one accepted install per
/// ballot. Written to disk before any message that reveals it leaves
/// (`.persistAcceptor`), that memory survives a crash, so the node's next
/// incarnation can vote for its old seat, a *stand-in*: a coordinator whose
/// live members are a minority of the view counts the seats of restarted
/// nodes that promise, and only those. Quorums of seats intersect as in
/// Paxos, so two coordinators cannot commit two successors of one view:
/// a stand-in promises one ballot at a time, reports what its seat accepted,
/// and never stands in for a view older than the last one it installed
/// (its seat moved on). A node whose disk shows an older view than the one
/// being flushed never installed it, so never voted in it: it votes fresh.
public struct AcceptorState: Hashable, Sendable {
    /// The last view this node installed, with the incarnations it had then.
    public var installed: ClusterView
    /// The highest ballot promised in a flush of `installed`.
    public var promised: ViewID?
    /// The install accepted in a flush of `installed`, and its ballot.
    public var accepted: Install?
    public var acceptedBallot: ViewID?

    public init(installed: ClusterView, promised: ViewID? = nil, accepted: Install? = nil, acceptedBallot: ViewID? = nil) {
        self.installed = installed
        self.promised = promised
        self.accepted = accepted
        self.acceptedBallot = acceptedBallot
    }
}

/// A stand-in's promise, as the coordinator keeps it.
struct StandInPromise: Sendable {
    var accepted: Install?
    var acceptedBallot: ViewID?
}

extension GroupNode {
    /// Records the acceptor state and has the shell write it before the
    /// messages that follow in the same effects.
    mutating func persistAcceptor(_ state: AcceptorState) {
        acceptor = state
        out.append(.persistAcceptor(state))
    }

    /// The seat in `view` a joiner may stand in for: its node's member,
    /// suspected (a new incarnation proves the old one dead).
    func standInSeat(for joiner: ProcessID, in view: ClusterView, suspects: Set<ProcessID>) -> ProcessID? {
        view.members.first { $0.node == joiner.node && $0.incarnation < joiner.incarnation && suspects.contains($0) }
    }

    /// At a joiner: a flush of the view its node last installed asks for
    /// its old seat's vote.
    mutating func standInFlush(from: ProcessID, previous: ViewID, proposal: ClusterView) {
        guard var state = acceptor, proposal.contains(me), proposal.id.coordinator == from else { return }
        if state.installed.id < previous {
            // The seat never installed `previous` (installing is written
            // first), so it never voted in a flush of it: it votes as a
            // fresh acceptor. (A flush of `previous` comes from a member
            // that installed it: that view was committed.) The coordinator
            // checked that the seat is this node's.
            // (Its members are not known here; the coordinator is one.)
            state = AcceptorState(installed: ClusterView(id: previous, members: [previous.coordinator]))
        }
        // Installed a later view: the seat moved on, it has no vote here.
        guard state.installed.id == previous else { return }
        if let promised = state.promised, proposal.id < promised {
            send(from.node, .flushReject(previous: previous, promised: promised))
            return
        }
        state.promised = proposal.id
        persistAcceptor(state)
        send(from.node, .standInPromise(previous: previous, ballot: proposal.id, accepted: state.accepted, acceptedBallot: state.acceptedBallot))
    }

    /// At a joiner: phase 2 of a flush it promised as a stand-in.
    mutating func standInPropose(from: ProcessID, ballot: ViewID, _ value: Install) {
        guard var state = acceptor, value.previous == state.installed.id, let promised = state.promised else { return }
        if ballot < promised {
            send(from.node, .flushReject(previous: state.installed.id, promised: promised))
            return
        }
        state.promised = ballot
        state.accepted = value
        state.acceptedBallot = ballot
        persistAcceptor(state)
        send(from.node, .accepted(ballot: ballot))
    }

    /// At the coordinator: a stand-in's promise for its seat.
    mutating func receiveStandInPromise(from: ProcessID, ballot: ViewID, accepted: Install?, acceptedBallot: ViewID?) {
        guard var c = coordinator, ballot == c.proposal.id, c.standIns[from] != nil, c.value == nil else { return }
        c.standInPromises[from] = StandInPromise(accepted: accepted, acceptedBallot: acceptedBallot)
        member.flush.setCoordinator(c)
        proposeIfReady(c)
    }

    /// Every survivor reported, and with the stand-ins that promised they
    /// hold a majority of the view's seats.
    mutating func proposeIfReady(_ c: CoordinatorFlush) {
        guard c.value == nil, c.reports.count == c.survivors.count, vlog.view.isMajority(c.seats(promisedOnly: true)) else { return }
        propose(c)
    }
}

extension CoordinatorFlush {
    /// The old view's seats this flush counts: survivors, and stand-ins
    /// (all invited ones, or those that promised).
    func seats(promisedOnly: Bool) -> [ProcessID] {
        survivors + standIns.compactMap { joiner, seat in !promisedOnly || standInPromises[joiner] != nil ? seat : nil }
    }

    /// Survivors and stand-ins that accepted, as seats of the old view.
    func acceptedSeats(in view: ClusterView) -> [ProcessID] {
        accepts.compactMap { view.contains($0) ? $0 : (standInPromises[$0] != nil ? standIns[$0] : nil) }
    }
}
