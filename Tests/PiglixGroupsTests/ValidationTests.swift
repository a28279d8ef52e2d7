import PiglixGroups
import PiglixTopics
import Testing

/// A peer is input too: decodable messages that do not fit the receiver's
/// view are dropped and reported, and never trap the node.
@Suite("validation of peer messages")
struct ValidationTests {
    /// A node of a 3-node view, fed `message` from member `from`.
    func feed(_ message: ProtocolMessage, from: UInt64 = 2) throws -> (GroupNode, [GroupEffect]) {
        let c = try TestCluster.started(3)
        var node = try #require(c.nodes[NodeID(1)])
        let sender = try #require(c.nodes[NodeID(from)]).me
        let effects = node.onMessage(from: sender, message, now: c.now + 1)
        return (node, effects)
    }

    func rejected(_ effects: [GroupEffect]) -> [RejectReason] {
        effects.compactMap { if case .rejectedMessage(_, let reason) = $0 { return reason } else { return nil } }
    }

    @Test("an order entry naming a rank outside the view is rejected")
    func orderRankOutOfView() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1)).id
        let (_, effects) = try feed(.order(view: view, first: 1, entries: [OrderEntry(origin: 7, seq: 1)]), from: 1)
        #expect(rejected(effects) == [.rankOutOfView])
    }

    @Test("flush reports and installs with vectors of the wrong length are rejected, not indexed")
    func wrongVectorLengths() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1))
        let digest = Digest(received: [0, 0], ordersKnown: 0)
        let report = FlushReport(
            previous: view.id, ballot: ViewID(epoch: 99, coordinator: view.members[0]), digest: digest, knownStable: digest, messages: [],
            ordersFirst: 1, orders: [], delivered: [0], floors: [0, 0, 0, 0], totalDelivered: 0, accepted: nil, acceptedBallot: nil)
        #expect(try rejected(feed(.flushReport(report)).1) == [.vectorLength])
        let install = Install(
            previous: view.id, view: ClusterView(id: ViewID(epoch: 99, coordinator: view.members[1]), members: view.members),
            cut: [5], ordersCut: 0, messages: [], ordersFirst: 1, orders: [], groups: [])
        #expect(try rejected(feed(.install(install)).1) == [.vectorLength])
        #expect(try rejected(feed(.propose(ballot: install.view.id, install)).1) == [.vectorLength])
        var zero = install
        zero.cut = [0, 0, 0]
        zero.ordersFirst = 0
        #expect(try rejected(feed(.install(zero)).1) == [.zeroIndex])
    }

    @Test("a stable digest of the wrong length in a heartbeat is rejected")
    func heartbeatStableLength() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1)).id
        let good = Digest(received: [0, 0, 0], ordersKnown: 0)
        let bad = Digest(received: [0], ordersKnown: 0)
        #expect(try rejected(feed(.heartbeat(view: view, digest: good, stable: bad), from: 1).1) == [.vectorLength])
        #expect(try rejected(feed(.heartbeat(view: view, digest: good, stable: good), from: 1).1).isEmpty)
    }

    @Test("a flush report whose order entry names a rank outside the view is rejected (FuzzCore trap in computeInstall)")
    func reportOrderOriginOutOfView() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1))
        let digest = Digest(received: [0, 0, 0], ordersKnown: 1)
        let report = FlushReport(
            previous: view.id, ballot: ViewID(epoch: 99, coordinator: view.members[0]), digest: digest, knownStable: digest, messages: [],
            ordersFirst: 1, orders: [OrderEntry(origin: 9, seq: 1)], delivered: [0, 0, 0], floors: [0, 0, 0], totalDelivered: 0,
            accepted: nil, acceptedBallot: nil)
        #expect(try rejected(feed(.flushReport(report)).1) == [.rankOutOfView])
    }

    @Test("a stable digest far beyond what this process sent does not stall it (FuzzCore hang in adoptStable)")
    func hugeStableDigestReturnsAtOnce() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1))
        let coordinator = try #require(c.nodes[view.members[0].node]).me
        // Feed it to a member that is not the coordinator.
        let target = try #require(view.members.dropFirst().first)
        var node = try #require(c.nodes[target.node])
        let huge = Digest(received: [UInt64.max, UInt64.max, UInt64.max], ordersKnown: 0)
        _ = node.onMessage(from: coordinator, .stable(view: view.id, digest: huge), now: c.now + 1)
        _ = node.onMessage(from: coordinator, .heartbeat(view: view.id, digest: Digest(received: [0, 0, 0], ordersKnown: 0), stable: huge), now: c.now + 2)
        // It returned (a hang is the failure) and is still a member of the view.
        #expect(node.currentView?.id == view.id)
    }

    @Test("a flush report claiming messages of the receiver's own stream that it never sent is rejected (FuzzCore trap in delivered)")
    func reportClaimingOwnStream() throws {
        let c = try TestCluster.started(3)
        let view = try #require(c.view(1))
        let node = try #require(c.nodes[NodeID(1)])
        let myRank = try #require(view.rank(of: node.me))
        var received: [UInt64] = [0, 0, 0]
        received[myRank] = 5
        let digest = Digest(received: received, ordersKnown: 0)
        let report = FlushReport(
            previous: view.id, ballot: ViewID(epoch: 99, coordinator: view.members[0]), digest: digest, knownStable: Digest(received: [0, 0, 0], ordersKnown: 0),
            messages: [], ordersFirst: 1, orders: [], delivered: [0, 0, 0], floors: [0, 0, 0], totalDelivered: 0, accepted: nil, acceptedBallot: nil)
        #expect(try rejected(feed(.flushReport(report)).1) == [.foreignOwnStream])
    }
}
