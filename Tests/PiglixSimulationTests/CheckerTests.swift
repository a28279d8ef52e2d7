import PiglixGroups
import PiglixTopics
import PiglixSimulation
import Testing

/// The checker is fed broken traces and must report each violation.
@Suite("checker self-tests")
struct CheckerTests {
    let p = ProcessID(node: NodeID(1), incarnation: 1)
    let q = ProcessID(node: NodeID(2), incarnation: 1)
    var v1: ClusterView { ClusterView(id: ViewID(epoch: 1, coordinator: p), members: [p, q]) }
    var v2: ClusterView { ClusterView(id: ViewID(epoch: 2, coordinator: p), members: [p, q]) }

    func publish(_ n: UInt64, by who: ProcessID, level: DeliveryLevel = .fifo) -> TraceEvent {
        .publish(at: n, process: who, session: 0, number: n, level: level, destination: "topic:a")
    }
    func deliver(_ n: UInt64, at who: ProcessID, view: ClusterView, origin: UInt32 = 0, seq: UInt64? = nil, level: DeliveryLevel = .fifo, from: ProcessID? = nil) -> TraceEvent {
        .deliver(
            at: 10 + n, process: who, view: view.id, id: MessageID(view: view.id, origin: origin, seq: seq ?? n),
            publish: PublishID(origin: from ?? p, seq: n), session: 0, number: n, level: level, groups: ["a"], afterCheckpoint: false)
    }
    func properties(_ trace: [TraceEvent]) -> Set<Property> { Set(Checker().check(trace).map(\.property)) }

    @Test("a clean trace has no violation")
    func cleanTrace() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            publish(1, by: p), deliver(1, at: p, view: v1), deliver(1, at: q, view: v1),
        ]
        #expect(properties(t).isEmpty)
    }

    @Test("two requests granted the same token in one view are reported (L1)")
    func lockTokenTwice_L1() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            .lockGrant(at: 1, process: p, view: v1.id, lock: "a", request: "1/1#1", token: 5),
            .lockGrant(at: 1, process: q, view: v1.id, lock: "a", request: "2/1#1", token: 5),
        ]
        #expect(properties(t).contains(.l1MutualExclusion))
    }

    @Test("a grant while the replica's holder did not release is reported (L1)")
    func lockTwoHolders_L1() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1),
            .lockGrant(at: 1, process: p, view: v1.id, lock: "a", request: "1/1#1", token: 1),
            .lockGrant(at: 2, process: p, view: v1.id, lock: "a", request: "1/1#2", token: 2),
        ]
        #expect(properties(t).contains(.l1MutualExclusion))
    }

    @Test("a token not larger than the last one is reported (L2)")
    func lockTokenGoesBack_L2() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1),
            .lockGrant(at: 1, process: p, view: v1.id, lock: "a", request: "1/1#1", token: 4),
            .lockReleased(at: 2, process: p, lock: "a", token: 4),
            .lockGrant(at: 3, process: p, view: v1.id, lock: "a", request: "1/1#2", token: 4),
        ]
        #expect(properties(t).contains(.l2FencingTokens))
    }

    @Test("a final table naming a process that is gone is reported (L3)")
    func lockHeldByTheDead_L3() {
        var final = FinalState()
        final.views = [p: v1]
        final.lockTables = [p: ["a": ["2/1#1@3"]]]
        #expect(Set(Checker().check([.install(at: 0, process: p, view: v1)], final: final).map(\.property)).contains(.l3PassOn))
    }

    @Test("two clients holding one lock at once are reported (L4), unless the first was paused")
    func lockOverlap_L4() {
        let overlap: [TraceEvent] = [
            .lockHolder(at: 1, process: p, lock: "a", token: 1, held: true),
            .lockHolder(at: 2, process: q, lock: "a", token: 2, held: true),
        ]
        #expect(properties(overlap).contains(.l4RealTime))
        let paused: [TraceEvent] = [
            .lockHolder(at: 1, process: p, lock: "a", token: 1, held: true),
            .fault(at: 2, "pause \(p) for 100"),
            .lockHolder(at: 3, process: q, lock: "a", token: 2, held: true),
        ]
        #expect(!properties(paused).contains(.l4RealTime))
    }

    @Test("one group view id with two member lists is reported (P2)")
    func groupViewTwoMemberLists_P2() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            .groupView(at: 1, process: p, pattern: "g.>", id: 3, members: [p]),
            .groupView(at: 2, process: q, pattern: "g.>", id: 3, members: [p, q]),
        ]
        #expect(properties(t).contains(.p2ViewAgreement))
    }

    @Test("a group view id going back at a process is reported (P2)")
    func groupViewGoingBack_P2() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1),
            .groupView(at: 1, process: p, pattern: "g.>", id: 4, members: [p]),
            .groupView(at: 2, process: p, pattern: "g.>", id: 2, members: [p]),
        ]
        #expect(properties(t).contains(.p2ViewAgreement))
    }

    @Test("agreeing group views, repeated at a view change, are clean")
    func groupViewsAgreeing() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            .groupView(at: 1, process: p, pattern: "g.>", id: 1, members: [p]),
            .groupView(at: 2, process: p, pattern: "g.>", id: 2, members: [p, q]),
            .groupView(at: 2, process: q, pattern: "g.>", id: 2, members: [p, q]),
            .install(at: 3, process: p, view: v2), .install(at: 3, process: q, view: v2),
            .groupView(at: 3, process: p, pattern: "g.>", id: 2, members: [p, q]),
        ]
        #expect(properties(t).isEmpty)
    }

    @Test("a duplicate delivery is reported (P5)")
    func duplicate_P5() {
        let t: [TraceEvent] = [.install(at: 0, process: p, view: v1), publish(1, by: p), deliver(1, at: p, view: v1), deliver(1, at: p, view: v1)]
        #expect(properties(t).contains(.p5Integrity))
    }

    @Test("a delivery that was never published is reported (P5)")
    func neverPublished_P5() {
        let t: [TraceEvent] = [.install(at: 0, process: p, view: v1), deliver(9, at: p, view: v1)]
        #expect(properties(t).contains(.p5Integrity))
    }

    @Test("a FIFO inversion is reported (P6)")
    func fifoInversion_P6() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), publish(1, by: p), publish(2, by: p),
            deliver(2, at: p, view: v1), deliver(1, at: p, view: v1),
        ]
        #expect(properties(t).contains(.p6Fifo))
    }

    @Test("two members delivering total messages in different orders is reported (P7)")
    func orderDisagreement_P7() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            publish(1, by: p, level: .total), publish(2, by: q, level: .total),
            deliver(1, at: p, view: v1, level: .total), deliver(2, at: p, view: v1, origin: 1, seq: 1, level: .total, from: q),
            deliver(2, at: q, view: v1, origin: 1, seq: 1, level: .total, from: q), deliver(1, at: q, view: v1, level: .total),
        ]
        #expect(properties(t).contains(.p7TotalOrder))
    }

    @Test("a survivor missing a message of the old view is reported (P3)")
    func survivorMissingMessage_P3() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1),
            publish(1, by: p), deliver(1, at: p, view: v1),
            .install(at: 50, process: p, view: v2), .install(at: 50, process: q, view: v2),
        ]
        #expect(properties(t).contains(.p3VirtualSynchrony))
    }

    @Test("a safe message acknowledged before every member holds it is reported (P8)")
    func safeAckedEarly_P8() {
        let id = MessageID(view: v1.id, origin: 0, seq: 1)
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), publish(1, by: p, level: .safe),
            .ack(at: 5, process: p, number: 1, level: .safe),
            .safeCheck(at: 5, process: p, id: id, missing: [q]),
        ]
        #expect(properties(t).contains(.p8Safe))
    }

    @Test("a delivery outside the sending view is reported (P4)")
    func wrongView_P4() {
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v1), .install(at: 1, process: p, view: v2), publish(1, by: p),
            deliver(1, at: p, view: v1).replacingView(v2.id),
        ]
        #expect(properties(t).contains(.p4SendingView))
    }

    @Test("views out of order, disagreeing member lists and a view without its installer are reported (P1, P2)")
    func viewAgreement_P1_P2() {
        let other = ClusterView(id: v1.id, members: [p])
        let without = ClusterView(id: ViewID(epoch: 3, coordinator: q), members: [q])
        let t: [TraceEvent] = [
            .install(at: 0, process: p, view: v2), .install(at: 1, process: p, view: v1),
            .install(at: 2, process: q, view: other), .install(at: 3, process: p, view: without),
        ]
        let found = properties(t)
        #expect(found.contains(.p1SelfInclusion))
        #expect(found.contains(.p2ViewAgreement))
    }

    @Test("a live process outside the final view, a lost probe and diverging group state are reported (P9, P10)")
    func livenessAndStateTransfer_P9_P10() {
        var final = FinalState()
        final.views = [p: v1, q: nil]
        final.probes = [1: [p]]
        final.states = [p: ["a": [1, 2]], q: ["a": [1]]]
        let found = Set(Checker().check([publish(1, by: p)], final: final).map(\.property))
        #expect(found.contains(.p9Liveness))
        #expect(found.contains(.p10StateTransfer))
    }
}

/// Idempotent publish (I1–I3): the checker is fed broken traces.
@Suite("checker self-tests: idempotent publish")
struct IdempotenceCheckerTests {
    let p = ProcessID(node: NodeID(1), incarnation: 1)
    let q = ProcessID(node: NodeID(2), incarnation: 1)
    var v1: ClusterView { ClusterView(id: ViewID(epoch: 1, coordinator: p), members: [p, q]) }
    var v2: ClusterView { ClusterView(id: ViewID(epoch: 2, coordinator: p), members: [p, q]) }

    /// Publish `n` as record `producer/sequence`.
    func publish(_ n: UInt64, by who: ProcessID, sequence: UInt64 = 1) -> [TraceEvent] {
        [
            .publish(at: n, process: who, session: 0, number: n, level: .total, destination: "topic:a"),
            .idempotent(at: n, process: who, number: n, producer: "p1", sequence: sequence),
        ]
    }
    func accept(_ n: UInt64, at who: ProcessID, view: ClusterView, sequence: UInt64 = 1) -> TraceEvent {
        .accepted(at: 10 + n, process: who, view: view.id, producer: "p1", sequence: sequence, number: n, id: MessageID(view: view.id, origin: 0, seq: n))
    }
    func properties(_ trace: [TraceEvent], final: FinalState? = nil) -> Set<Property> {
        Set(Checker().check(trace, final: final).map(\.property))
    }
    var installs: [TraceEvent] { [.install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1)] }
    var next: [TraceEvent] { [.install(at: 90, process: p, view: v2), .install(at: 90, process: q, view: v2)] }

    @Test("a record accepted once everywhere, its retry answered with it, is clean")
    func clean() {
        let t = installs + publish(1, by: p) + [accept(1, at: p, view: v1), accept(1, at: q, view: v1)] + publish(2, by: q)
            + [.retryAnswered(at: 30, process: q, view: v1.id, producer: "p1", sequence: 1, number: 2, original: 1)] + next
        #expect(properties(t).isEmpty)
    }

    @Test("a retry accepted again at the same process is reported (I1)")
    func duplicateAcceptance_I1() {
        let t = installs + publish(1, by: p) + publish(2, by: q) + [accept(1, at: p, view: v1), accept(2, at: p, view: v1)]
        #expect(properties(t).contains(.i1AtMostOnce))
    }

    @Test("two members of one view accepting different copies is reported (I2)")
    func disagreementInView_I2() {
        let t = installs + publish(1, by: p) + publish(2, by: q) + [accept(1, at: p, view: v1), accept(2, at: q, view: v1)]
        #expect(properties(t).contains(.i2Agreement))
    }

    @Test("a retry accepted in a later view of the primary history is reported (I2); after its acceptor left, it is not")
    func disagreementAcrossViews_I2() {
        let t = installs + publish(1, by: p) + [accept(1, at: p, view: v1)] + next + publish(2, by: q) + [accept(2, at: q, view: v2)]
            + [.install(at: 200, process: q, view: ClusterView(id: ViewID(epoch: 3, coordinator: q), members: [q]))]
        #expect(properties(t).contains(.i2Agreement))
        // p accepted #1 in v1 and never installed a later view (it crashed):
        // the primary may never have delivered it; q's acceptance is fine.
        let orphan = installs + publish(1, by: p) + [accept(1, at: p, view: v1)] + [.install(at: 90, process: q, view: v2)]
            + publish(2, by: q) + [accept(2, at: q, view: v2), .install(at: 200, process: q, view: ClusterView(id: ViewID(epoch: 3, coordinator: q), members: [q]))]
        #expect(!properties(orphan).contains(.i2Agreement))
    }

    @Test("a copy accepted under another record's key is reported (I2)")
    func wrongKey_I2() {
        let t = installs + publish(1, by: p, sequence: 2) + [accept(1, at: p, view: v1, sequence: 1)]
        #expect(properties(t).contains(.i2Agreement))
    }

    @Test("a retry answered with a copy that was not the accepted one is reported (I3)")
    func wrongAnswer_I3() {
        let t = installs + publish(1, by: p) + publish(2, by: q) + [accept(1, at: p, view: v1), accept(1, at: q, view: v1)]
            + publish(3, by: q) + [.retryAnswered(at: 30, process: q, view: v1.id, producer: "p1", sequence: 1, number: 3, original: 2)] + next
        #expect(properties(t).contains(.i3RetryAnswer))
    }

    @Test("final idempotence tables that differ are reported (I2)")
    func finalTables_I2() {
        var final = FinalState()
        final.views = [p: v1, q: v1]
        final.idempotenceTables = [p: ["p1/1": 1], q: ["p1/1": 2]]
        #expect(properties(installs, final: final).contains(.i2Agreement))
    }
}

/// Q1–Q3 of work queues (docs/patterns.md, "Work queues").
@Suite("checker self-tests: work queues")
struct QueueCheckerTests {
    let p = ProcessID(node: NodeID(1), incarnation: 1)
    let q = ProcessID(node: NodeID(2), incarnation: 1)
    let r = ProcessID(node: NodeID(3), incarnation: 1)
    var v1: ClusterView { ClusterView(id: ViewID(epoch: 1, coordinator: p), members: [p, q]) }
    var v2: ClusterView { ClusterView(id: ViewID(epoch: 2, coordinator: p), members: [p, q]) }
    let key = QueueMessageKey(view: 1, origin: 0, seq: 5)
    var installs: [TraceEvent] { [.install(at: 0, process: p, view: v1), .install(at: 0, process: q, view: v1)] }
    var next: [TraceEvent] { [.install(at: 90, process: p, view: v2), .install(at: 90, process: q, view: v2)] }

    func assign(at who: ProcessID, to member: ProcessID, index: UInt32 = 1, view: ClusterView? = nil) -> TraceEvent {
        .queueAssign(
            at: 10, process: who, view: (view ?? v1).id, queue: "w", key: key, index: index, member: QueueMember(process: member, local: 1),
            number: 5, redelivered: index > 1)
    }
    func acked(at who: ProcessID) -> TraceEvent { .queueAcked(at: 20, process: who, queue: "w", key: key) }
    func properties(_ trace: [TraceEvent], final: FinalState? = nil) -> Set<Property> {
        Set(Checker().check(trace, final: final).map(\.property))
    }

    @Test("one assignment everywhere, then its ack, is clean")
    func clean() {
        var final = FinalState()
        final.views = [p: v2, q: v2]
        final.queueLeftovers = [p: [], q: []]
        let t = installs + [assign(at: p, to: q), assign(at: q, to: q), acked(at: p), acked(at: q)] + next
        #expect(properties(t, final: final).isEmpty)
    }

    @Test("two members for one assignment in the primary history are reported (Q1)")
    func twoCoordinators_Q1() {
        let t = installs + [assign(at: p, to: q), assign(at: q, to: p)] + next
        #expect(properties(t).contains(.q1OneCoordinator))
        // One of them left the primary history (never installed a later view): fine.
        let cutOff = installs + [assign(at: p, to: q), assign(at: q, to: p), .install(at: 90, process: q, view: v2)]
        #expect(!properties(cutOff).contains(.q1OneCoordinator))
    }

    @Test("an assignment to a member of a process outside the view is reported (Q1)")
    func deadMember_Q1() {
        #expect(properties(installs + [assign(at: p, to: r)]).contains(.q1OneCoordinator))
    }

    @Test("an assignment after the ack is reported (Q3)")
    func afterAck_Q3() {
        #expect(properties(installs + [assign(at: p, to: q), acked(at: p), assign(at: p, to: p, index: 2)]).contains(.q3AckedStaysAcked))
    }

    @Test("a message left unacked after the drain, or assigned and never acked, is reported (Q2)")
    func lost_Q2() {
        var final = FinalState()
        final.views = [p: v1, q: v1]
        final.queueLeftovers = [p: ["w:1/0.5"]]
        #expect(properties(installs, final: final).contains(.q2NoneLost))
        final.queueLeftovers = [:]
        #expect(properties(installs + [assign(at: p, to: q)], final: final).contains(.q2NoneLost))
        #expect(properties(installs + [assign(at: p, to: q), acked(at: p), acked(at: p)]).contains(.q2NoneLost))
    }
}

extension TraceEvent {
    func replacingView(_ v: ViewID) -> TraceEvent {
        guard case .deliver(let at, let p, _, let id, let pub, let s, let n, let l, let g, let a) = self else { return self }
        return .deliver(at: at, process: p, view: v, id: id, publish: pub, session: s, number: n, level: l, groups: g, afterCheckpoint: a)
    }
}
