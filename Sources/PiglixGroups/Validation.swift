/// Why a decoded protocol message was refused before the core acted on it.
/// A peer is input too: a message can decode and still not fit this
/// process's view (a rank outside it, a vector of the wrong length, a cut it
/// cannot reach). Such a message is dropped and reported
/// (`GroupEffect.rejectedMessage`), never trusted into an index.
public enum RejectReason: String, Hashable, Sendable, CaseIterable {
    /// An origin rank that is not a rank of the view.
    case rankOutOfView = "rank_out_of_view"
    /// A per-rank vector whose length is not the view's member count.
    case vectorLength = "vector_length"
    /// An order or stream index of 0 (they number from 1).
    case zeroIndex = "zero_index"
    /// An install whose cut this process cannot reach from what it holds
    /// and what the install carries.
    case unreachableCut = "unreachable_cut"
    /// Messages of this process's own stream that it never sent: only this
    /// process can know what it sent, so no peer can add to it.
    case foreignOwnStream = "foreign_own_stream"
}

extension GroupNode {
    // Each check runs in the arm of `receive` that handles its kind, on the
    // payload already bound there: the per-message kinds (data, acks,
    // stability) pay nothing, and no message is copied to be checked.
    // Messages of another view are judged where they are handled (stale
    // ones are dropped, later ones kept and checked again on replay).

    /// Drops a message before the core acts on it, and says so.
    mutating func reject(_ from: ProcessID, _ reason: RejectReason) {
        out.append(.rejectedMessage(from: from, reason))
    }

    /// Order entries of the current view.
    func rejection(orderFirst first: UInt64, _ entries: [OrderEntry]) -> RejectReason? {
        if first == 0 { return .zeroIndex }
        let n = vlog.view.members.count
        if entries.contains(where: { Int($0.origin) >= n }) { return .rankOutOfView }
        return nil
    }

    /// A flush report, a proposed value or an install closing `previous`.
    func rejection(report: FlushReport) -> RejectReason? {
        guard inView, report.previous == vlog.view.id else { return nil }
        if let reason = Self.check(report, members: vlog.view.members.count) { return reason }
        if report.digest.received[vlog.myRank] > vlog.streams[vlog.myRank].received || claimsOwnMessages(report.messages) {
            return .foreignOwnStream
        }
        if let accepted = report.accepted, accepted.previous == vlog.view.id, claimsOwnMessages(accepted.messages)
            || accepted.cut[vlog.myRank] > vlog.streams[vlog.myRank].received
        {
            return .foreignOwnStream
        }
        return nil
    }

    /// Whether `messages` hold one of this process's stream beyond what it sent.
    func claimsOwnMessages(_ messages: [DataMessage]) -> Bool {
        let rank = UInt32(vlog.myRank)
        let sent = vlog.streams[vlog.myRank].received
        return messages.contains { $0.id.origin == rank && $0.id.seq > sent }
    }

    func rejection(install: Install) -> RejectReason? {
        guard inView, install.previous == vlog.view.id else { return nil }
        if let reason = Self.check(install, members: vlog.view.members.count) { return reason }
        if claimsOwnMessages(install.messages) || install.cut[vlog.myRank] > vlog.streams[vlog.myRank].received { return .foreignOwnStream }
        if flushing && install.view.contains(me) && !canReach(install) { return .unreachableCut }
        return nil
    }

    /// A stream position (checkpoint cut, checkpoint request) of the current view.
    func rejection(position: StreamPosition) -> RejectReason? {
        guard inView, position.view == vlog.view.id, position.delivered.count != vlog.view.members.count else { return nil }
        return .vectorLength
    }

    static func check(_ install: Install, members n: Int) -> RejectReason? {
        if install.cut.count != n { return .vectorLength }
        if install.ordersFirst == 0 { return .zeroIndex }
        if install.messages.contains(where: { Int($0.id.origin) >= n }) { return .rankOutOfView }
        if install.orders.contains(where: { Int($0.origin) >= n }) { return .rankOutOfView }
        return nil
    }

    static func check(_ report: FlushReport, members n: Int) -> RejectReason? {
        for vector in [report.digest.received, report.knownStable.received, report.delivered, report.floors] where vector.count != n {
            return .vectorLength
        }
        if report.ordersFirst == 0 { return .zeroIndex }
        if report.messages.contains(where: { Int($0.id.origin) >= n }) { return .rankOutOfView }
        if report.orders.contains(where: { Int($0.origin) >= n }) { return .rankOutOfView }
        if let accepted = report.accepted { return check(accepted, members: n) }
        return nil
    }

    /// Whether delivering `inst` (Flush.swift, `deliverToCut`) can reach its
    /// cut from what this process holds: the same walk, without the effects.
    func canReach(_ inst: Install) -> Bool {
        var reach = vlog.streams.map(\.received)
        for m in inst.messages {
            let r = Int(m.id.origin)
            if m.id.seq == reach[r] + 1 { reach[r] += 1 }
        }
        for r in inst.cut.indices where reach[r] < inst.cut[r] || vlog.streams[r].delivered > inst.cut[r] { return false }
        var known = vlog.ordersKnown
        for i in inst.orders.indices where inst.ordersFirst + UInt64(i) == known + 1 { known += 1 }
        return known >= inst.ordersCut && vlog.totalDelivered <= inst.ordersCut
    }
}
