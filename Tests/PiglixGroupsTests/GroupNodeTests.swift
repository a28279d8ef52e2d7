import PiglixGroups
import PiglixTopics
import Testing

@Suite("membership and views")
struct MembershipTests {
    @Test("nodes joining through seeds install one view with every member, oldest first (P1, P2)")
    func joinsInstallSameView_P1_P2() throws {
        let c = try TestCluster.started(4)
        let v = try #require(c.view(1))
        #expect(v.members.map(\.node.rawValue) == [1] + v.members.dropFirst().map(\.node.rawValue))
        for n in 1...4 {
            #expect(c.view(UInt64(n)) == v)
            let seen = c.views[NodeID(UInt64(n))] ?? []
            #expect(seen.allSatisfy { $0.contains(c.nodes[NodeID(UInt64(n))]!.me) })
            #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.id < $1.id })
        }
    }

    @Test("a crashed member is excluded and survivors deliver the same set across the view change (P3)")
    func survivorsDeliverSameSetAcrossViewChange_P3() throws {
        var c = try TestCluster.started(3)
        let old = try #require(c.view(1)).id
        // Node 3's messages reach node 1 only, then node 3 crashes.
        c.cutOneWay(3, 2)
        for i in 0..<5 { c.publish(3, "m\(i)") }
        c.pump()
        c.stopped.insert(NodeID(3))
        c.tickUntil { $0.view(1)?.members.count == 2 && $0.view(2)?.members.count == 2 }
        #expect(c.view(1) == c.view(2))
        #expect(c.delivered(1, in: old) == c.delivered(2, in: old))
        #expect(c.delivered(2, in: old).contains("m4"))
    }

    @Test("a coordinator crashing during the flush is replaced by the next oldest member")
    func coordinatorCrashDuringFlushIsReplaced() throws {
        var c = try TestCluster.started(5)
        c.stopped.insert(NodeID(5))
        // Let node 1 start the flush, then crash it before anyone installs.
        c.tickUntil(max: 50) { $0.sent["flushStart", default: 0] > 0 }
        c.stopped.insert(NodeID(1))
        c.queue.removeAll()
        c.tickUntil { $0.view(2)?.members.count == 3 && $0.view(3) == $0.view(2) && $0.view(4) == $0.view(2) }
        let v = try #require(c.view(2))
        #expect(v.members.map(\.node.rawValue).sorted() == [2, 3, 4])
        #expect(v.coordinator.node == NodeID(2))
    }

    @Test("a minority stops accepting publishes and rejoins as a new incarnation after the heal")
    func minorityBlocksThenRejoinsAfterHeal() throws {
        var c = try TestCluster.started(3)
        c.cut(3, 1)
        c.cut(3, 2)
        c.tickUntil { $0.view(1)?.members.count == 2 && $0.primaryLost.contains(NodeID(3)) }
        #expect(c.primaryLost.contains(NodeID(3)))
        #expect(!c.primaryLost.contains(NodeID(1)))
        c.publish(3, "refused")
        #expect(c.refusals[NodeID(3)]?.last == .notInPrimary)
        c.healAll()
        c.tickUntil { $0.allInOneView(3) }
        #expect(c.allInOneView(3))
        #expect(c.rejoined[NodeID(3)]?.incarnation == 2)
    }

    @Test("a node paused beyond the suspicion timeout is excluded and comes back as a new incarnation")
    func wronglySuspectedNodeRejoinsAsNewIncarnation() throws {
        var c = try TestCluster.started(3)
        c.stopped.insert(NodeID(2))
        c.tickUntil { $0.view(1)?.members.count == 2 }
        c.stopped.remove(NodeID(2))
        c.tickUntil { $0.allInOneView(3) }
        #expect(c.allInOneView(3))
        #expect(c.nodes[NodeID(2)]!.me.incarnation == 2)
    }

    @Test("settings reject a suspicion timeout shorter than three heartbeats")
    func settingsValidateBounds() {
        var s = GroupSettings()
        s.suspicionTimeoutTicks = s.heartbeatIntervalTicks
        #expect(throws: GroupSettings.Invalid.self) { try s.validate() }
        var t = GroupSettings()
        t.unstableMessagesMax = 0
        #expect(throws: GroupSettings.Invalid.notPositive(name: "unstableMessagesMax")) { try t.validate() }
    }
}

@Suite("ordering, stability, flow control")
struct OrderingTests {
    @Test("concurrent total publishes are delivered in one order everywhere (sequencer, P7)")
    func sequencerGivesOneOrder_P7() throws {
        var c = try TestCluster.started(3)
        for i in 0..<10 {
            for n in 1...3 { c.publish(UInt64(n), "n\(n)-\(i)", level: .total) }
        }
        c.pump()
        c.tick(2)
        let o1 = c.delivered(1)
        #expect(o1.count == 30)
        #expect(c.delivered(2) == o1)
        #expect(c.delivered(3) == o1)
    }

    @Test("fifo messages keep publish order per publisher, also across levels (P6)")
    func fifoAcrossLevels_P6() throws {
        var c = try TestCluster.started(3)
        let levels: [DeliveryLevel] = [.fifo, .total, .fifo, .safe, .fifo, .total]
        for (i, l) in levels.enumerated() { c.publish(2, "m\(i)", level: l) }
        c.pump()
        c.tick(3)
        for n in 1...3 { #expect(c.delivered(UInt64(n)) == (0..<6).map { "m\($0)" }) }
    }

    @Test("a safe message is delivered and acknowledged only once every member holds it (P8)")
    func safeWaitsForStability_P8() throws {
        var c = try TestCluster.started(3)
        c.cutOneWay(1, 3)
        c.publish(1, "s", level: .safe, token: 7)
        c.pump()
        #expect(c.delivered(1).isEmpty && c.delivered(2).isEmpty)
        #expect(c.acks[NodeID(1)] == nil)
        c.healAll()
        c.tick(3)
        for n in 1...3 { #expect(c.delivered(UInt64(n)) == ["s"]) }
        #expect(c.acks[NodeID(1)]?.first?.token == 7)
        #expect(c.acks[NodeID(1)]?.first?.level == .safe)
    }

    @Test("stable messages are garbage-collected: buffers empty after steady load")
    func stabilityCollectsGarbage() throws {
        var c = try TestCluster.started(3)
        for i in 0..<500 { c.publish(UInt64(i % 3 + 1), "m\(i)", level: i % 2 == 0 ? .fifo : .total) }
        c.pump()
        c.tick(3)
        for n in 1...3 {
            #expect(c.delivered(UInt64(n)).count == 500)
            #expect(c.nodes[NodeID(UInt64(n))]!.bufferedMessageCount == 0)
        }
    }

    @Test("flow control: beyond the unstable window publishes wait, beyond the pending queue they are refused")
    func flowControlBoundsMemory() throws {
        var s = TestCluster.defaultSettings
        s.unstableMessagesMax = 4
        s.pendingPublishesMax = 3
        var c = try TestCluster.started(3, settings: s)
        c.cutOneWay(1, 3)
        for i in 0..<10 { c.publish(1, "m\(i)", token: UInt64(i)) }
        #expect(c.nodes[NodeID(1)]!.pendingPublishCount == 3)
        #expect(c.refusals[NodeID(1)]?.count == 3)
        if case .pendingFull = c.refusals[NodeID(1)]?.first {} else { Issue.record("expected pendingFull") }
        c.healAll()
        c.tick(6)
        #expect(c.delivered(3).count == 7)
        #expect(c.nodes[NodeID(1)]!.pendingPublishCount == 0)
    }
}

@Suite("lightweight groups and state transfer")
struct GroupTests {
    @Test("group joins are ordered events: every node derives the same group view")
    func groupViewsAgree() throws {
        var c = try TestCluster.started(3)
        c.join(2, "a.>")
        c.join(3, "a.>")
        c.join(1, "x.*")
        c.tick(3)
        let p = try TopicPattern("a.>")
        let v1 = c.nodes[NodeID(1)]!.groupView(p)
        #expect(v1?.members.map(\.node.rawValue) == [2, 3])
        #expect(c.nodes[NodeID(2)]!.groupView(p) == v1)
        #expect(c.nodes[NodeID(3)]!.groupView(p) == v1)
    }

    @Test("a joiner's checkpoint plus what it delivers later equals an old member's state (P10)")
    func joinerCheckpointPlusLaterEqualsOldMembers_P10() throws {
        var c = try TestCluster.started(3)
        c.join(1, "a.>")
        c.tick(3)
        for i in 0..<5 { c.publish(2, "before\(i)") }
        c.pump()
        c.join(3, "a.>")
        // Publishes race with the join and the checkpoint.
        for i in 0..<5 { c.publish(1, "during\(i)") }
        c.pump()
        c.tick(5)
        for i in 0..<5 { c.publish(2, "after\(i)") }
        c.pump()
        c.tick(3)
        let p = try TopicPattern("a.>")
        let old = c.states[NodeID(1)]?[p] ?? []
        let joiner = c.states[NodeID(3)]?[p] ?? []
        #expect(old.count == 15)
        #expect(Set(joiner) == Set(old))
        #expect(joiner.count == old.count)
    }
}
