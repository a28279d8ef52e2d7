import PiglixGroups
import PiglixTopics
import XCTest

/// The work queue table (docs/patterns.md, "Work queues"): Q1–Q3 on the
/// pure value the broker and the simulator run.
final class QueueTableTests: XCTestCase {
    typealias Table = QueueTable<String>
    let pattern = try! TopicPattern("jobs.>")
    let topic = try! Topic("jobs.a")
    let n1 = ProcessID(node: NodeID(1), incarnation: 1)
    let n2 = ProcessID(node: NodeID(2), incarnation: 1)
    let n3 = ProcessID(node: NodeID(3), incarnation: 1)

    func key(_ seq: UInt64) -> QueueMessageKey { QueueMessageKey(view: 1, origin: 0, seq: seq) }

    func assignments(_ effects: [QueueEffect<String>]) -> [(member: QueueMember, key: QueueMessageKey, redelivered: Bool)] {
        effects.compactMap {
            if case .assign(_, let m, let k, _, let r) = $0 { return (m, k, r) }
            return nil
        }
    }

    func testAssignmentRotatesAndEachMessageHasExactlyOneCoordinator_Q1() {
        var table = Table()
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1), c = QueueMember(process: n3, local: 1)
        for m in [a, b, c] { XCTAssertTrue(table.join(queue: "w", pattern: pattern, member: m).isEmpty) }
        var got: [QueueMember] = []
        for s in 1...6 {
            let out = assignments(table.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)"))
            XCTAssertEqual(out.count, 1, "exactly one coordinator")
            XCTAssertFalse(out[0].redelivered)
            got.append(out[0].member)
        }
        XCTAssertEqual(got, [a, b, c, a, b, c])
        // Deterministic: a copy fed the same inputs decides the same.
        var other = Table()
        for m in [a, b, c] { _ = other.join(queue: "w", pattern: pattern, member: m) }
        for s in 1...6 { _ = other.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)") }
        for s in 1...6 { XCTAssertEqual(other.holder(of: key(UInt64(s)), in: "w"), table.holder(of: key(UInt64(s)), in: "w")) }
    }

    func testNonMatchingTopicIsNotQueued() {
        var table = Table()
        _ = table.join(queue: "w", pattern: pattern, member: QueueMember(process: n1, local: 1))
        XCTAssertTrue(table.deliver(key: key(1), topic: try! Topic("other.a"), payload: "x").isEmpty)
        XCTAssertEqual(table.unackedCount(of: "w"), 0)
    }

    func testLeaveRedeliversToTheNextRankedCohortMarked_Q2() {
        var table = Table()
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1), c = QueueMember(process: n3, local: 1)
        for m in [a, b, c] { _ = table.join(queue: "w", pattern: pattern, member: m) }
        for s in 1...3 { _ = table.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)") }
        // b holds key 2; its stream closes: c (next after b) takes it over.
        let out = assignments(table.leave(queue: "w", member: b))
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].member, c)
        XCTAssertEqual(out[0].key, key(2))
        XCTAssertTrue(out[0].redelivered)
        // c leaves too: both of its messages go to a (cyclic successor).
        let out2 = assignments(table.leave(queue: "w", member: c))
        XCTAssertEqual(out2.map(\.member), [a, a])
        XCTAssertEqual(out2.map(\.key), [key(2), key(3)])
        XCTAssertTrue(out2.allSatisfy(\.redelivered))
    }

    func testNodeFailureRedeliversWhatItsMembersHeld_Q2() {
        var table = Table()
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1), b2 = QueueMember(process: n2, local: 2)
        for m in [a, b, b2] { _ = table.join(queue: "w", pattern: pattern, member: m) }
        for s in 1...6 { _ = table.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)") }
        let out = assignments(table.viewInstalled([n1, n3]))
        XCTAssertEqual(Set(out.map(\.key)), [key(2), key(3), key(5), key(6)])
        XCTAssertTrue(out.allSatisfy { $0.member == a && $0.redelivered })
        XCTAssertEqual(table.members(of: "w"), [a])
        XCTAssertEqual(table.held(by: a, in: "w").count, 6)
    }

    func testAckRemovesAndAnAckedMessageIsNeverAssignedAgain_Q3() {
        var table = Table()
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1)
        for m in [a, b] { _ = table.join(queue: "w", pattern: pattern, member: m) }
        _ = table.deliver(key: key(1), topic: topic, payload: "m1")
        let (results, _) = table.ack(queue: "w", keys: [key(1), key(9)])
        XCTAssertEqual(results, [.acked, .unknown])
        XCTAssertEqual(table.ack(queue: "w", keys: [key(1)]).results, [.unknown], "already acked")
        XCTAssertTrue(assignments(table.leave(queue: "w", member: a)).isEmpty)
        XCTAssertEqual(table.ack(queue: "nope", keys: [key(1)]).results, [.unknown])
    }

    func testInFlightBoundFillsTheBacklogAndAcksDrainIt() {
        var table = Table(limits: QueueLimits(unackedPerQueueMax: 5, inFlightPerMemberMax: 2))
        let a = QueueMember(process: n1, local: 1)
        _ = table.join(queue: "w", pattern: pattern, member: a)
        var assigned = 0
        var overflowed = 0
        for s in 1...6 {
            for e in table.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)") {
                if case .assign = e { assigned += 1 }
                if case .overflow = e { overflowed += 1 }
            }
        }
        XCTAssertEqual(assigned, 2)
        XCTAssertEqual(overflowed, 1, "the sixth is past unackedPerQueueMax")
        XCTAssertEqual(table.backlogCount(of: "w"), 3)
        let out = assignments(table.ack(queue: "w", keys: [key(1)]).effects)
        XCTAssertEqual(out.map(\.key), [key(3)], "the backlog drains in order")
        // A second member joining takes backlog at once.
        let b = QueueMember(process: n2, local: 1)
        XCTAssertEqual(assignments(table.join(queue: "w", pattern: pattern, member: b)).count, 2)
        XCTAssertEqual(table.backlogCount(of: "w"), 0)
    }

    func testOrphansWaitForAMemberAndComeRedelivered() {
        var table = Table()
        let a = QueueMember(process: n1, local: 1)
        _ = table.join(queue: "w", pattern: pattern, member: a)
        _ = table.deliver(key: key(1), topic: topic, payload: "m1")
        XCTAssertTrue(table.leave(queue: "w", member: a).isEmpty)
        XCTAssertEqual(table.unackedCount(of: "w"), 1, "kept with no member")
        let b = QueueMember(process: n2, local: 7)
        let out = assignments(table.join(queue: "w", pattern: pattern, member: b))
        XCTAssertEqual(out.count, 1)
        XCTAssertTrue(out[0].redelivered)
        _ = table.ack(queue: "w", keys: [key(1)])
        _ = table.leave(queue: "w", member: b)
        XCTAssertTrue(table.isEmpty, "no member, nothing unacked: the queue is gone")
    }

    func testJoinRefusals() {
        var table = Table(limits: QueueLimits(queuesMax: 1, membersPerQueueMax: 1))
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1)
        _ = table.join(queue: "w", pattern: pattern, member: a)
        guard case .refuseJoin = table.join(queue: "w", pattern: try! TopicPattern("x"), member: b).first else { return XCTFail() }
        guard case .refuseJoin = table.join(queue: "w", pattern: pattern, member: b).first else { return XCTFail() }
        guard case .refuseJoin = table.join(queue: "v", pattern: pattern, member: b).first else { return XCTFail() }
        XCTAssertEqual(table.members(of: "w"), [a])
    }

    func testCheckpointRoundTripGivesTheSameDecisions() {
        var table = Table(limits: QueueLimits(inFlightPerMemberMax: 2))
        let a = QueueMember(process: n1, local: 1), b = QueueMember(process: n2, local: 1)
        for m in [a, b] { _ = table.join(queue: "w", pattern: pattern, member: m) }
        for s in 1...7 { _ = table.deliver(key: key(UInt64(s)), topic: topic, payload: "m\(s)") }
        var copy = Table(limits: table.limits, restoring: table.snapshot())
        XCTAssertEqual(copy.backlogCount(of: "w"), table.backlogCount(of: "w"))
        let x = assignments(table.viewInstalled([n2]))
        let y = assignments(copy.viewInstalled([n2]))
        XCTAssertEqual(x.map(\.key), y.map(\.key))
        XCTAssertEqual(x.map(\.member), y.map(\.member))
        let p = assignments(table.ack(queue: "w", keys: [key(2)]).effects)
        let q = assignments(copy.ack(queue: "w", keys: [key(2)]).effects)
        XCTAssertEqual(p.map(\.key), q.map(\.key))
    }
}
