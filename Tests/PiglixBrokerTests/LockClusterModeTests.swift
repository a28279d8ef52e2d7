import NIOCore
import PiglixBroker
import PiglixCluster
import PiglixTopics
import PiglixWire
import XCTest

@testable import PiglixGroups

/// Locks in the broker's cluster mode over the fake group layer: requests
/// and releases go through the group, grants come from the delivered order,
/// a view without this process ends its streams (docs/patterns.md, "Locks").
final class LockClusterModeTests: XCTestCase {
    private func makeBroker(hold: Bool = false) async throws -> (Broker, FakeGroupLayer) {
        let layer = FakeGroupLayer()
        if hold { layer.state.withLock { $0.holdTransfers = true } }
        let broker = try Broker(settings: BrokerSettings(), epoch: 0xE, cluster: layer)
        try await broker.startCluster()
        return (broker, layer)
    }

    private func next(_ handle: LockHandle) async -> LockRecord? {
        var iterator = handle.records.makeAsyncIterator()
        return await iterator.next()
    }

    func testRequestsAreMulticastAndGrantedInDeliveredOrder_L1_L2() async throws {
        let (broker, layer) = try await makeBroker()
        let first = try await broker.requestLock("job")
        let second = try await broker.requestLock("job")
        let a = await next(first)
        let b = await next(second)
        guard case .granted("job", let token)? = a else { return XCTFail("\(String(describing: a))") }
        XCTAssertEqual(b, .waiting(lock: "job", position: 1))
        XCTAssertEqual(layer.state.withLock { $0.delivered }, 2, "each request went through the group")
        first.close()
        try await Task.sleep(for: .milliseconds(50))
        let c = await next(second)
        XCTAssertEqual(c, .granted(lock: "job", token: token + 1))
        let table = broker.lockTable()
        XCTAssertEqual(table.locks.first?.token, token + 1)
        XCTAssertEqual(table.locks.first?.holder?.node, "n1")
        XCTAssertTrue(table.ready)
    }

    func testAViewWithoutThisProcessEndsItsStreamsAndPassesTheLock_L3() async throws {
        let (broker, _) = try await makeBroker()
        let handle = try await broker.requestLock("job")
        let first = await next(handle)
        guard case .granted("job", let granted)? = first else { return XCTFail("\(String(describing: first))") }
        broker.clusterGroupViewInstalled(pattern: Broker.locksPattern, view: 9, clusterEpoch: 2, processes: ["someone/1"])
        let end = await next(handle)
        guard case .lost(let lock, let token, let reason)? = end else { return XCTFail("no lost record") }
        XCTAssertEqual(lock, "job")
        XCTAssertEqual(token, granted)
        XCTAssertTrue(reason.contains("left"), reason)
        XCTAssertTrue(broker.lockTable().locks.isEmpty)
    }

    /// A holder whose process a view excluded may not know it yet (its node
    /// learns at its lease's end): the next holder's client is told only
    /// after the lock-delay, though the table granted at once (seed 403087).
    func testAGrantAfterAnExcludedHolderWaitsForTheLockDelay_L4() async throws {
        let (broker, layer) = try await makeBroker()
        let me = processName(node: nodeID(forName: "n1"), incarnation: 1)
        let other = LockRequest(owner: "beef/1", id: 1)
        let request = ClusterPublish(
            destination: .topic(try Topic("$piglix.locks")), level: .safe, session: 0x4C4F_434B_0000_0000,
            payload: LockOperation.request(lock: "job", other).encoded())
        layer.publish([request]) { _ in }
        XCTAssertEqual(broker.lockTable().locks.first?.holder?.process, "beef/1")
        let token = broker.lockTable().locks.first?.token ?? 0
        let handle = try await broker.requestLock("job")
        let waiting = await next(handle)
        XCTAssertEqual(waiting, .waiting(lock: "job", position: 1))

        let excluded = ContinuousClock.now
        broker.clusterGroupViewInstalled(pattern: Broker.locksPattern, view: 9, clusterEpoch: 2, processes: [me])
        XCTAssertEqual(broker.lockTable().locks.first?.token, token + 1, "the table grants at once")
        let granted = await next(handle)
        let waited = ContinuousClock.now - excluded
        XCTAssertEqual(granted, .granted(lock: "job", token: token + 1))
        // The fake layer's suspicion timeout is 1 s; the delay is 0.75 of it.
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(740), "told after \(waited)")
        XCTAssertLessThan(waited, .seconds(5))
    }

    /// The lock table came from a node a flush then excluded, holding an
    /// operation the flush cut: the core restarts its transfer
    /// (`clusterTransferRestarted`). Lock calls answer 503 meanwhile; the
    /// survivor's table then decides every stream of this node: a grant the
    /// primary never made is `lost`, one it made is `granted` with its token.
    func testATableTakenAgainReconcilesThisNodesStreams_L1() async throws {
        let (broker, _) = try await makeBroker()
        let me = processName(node: nodeID(forName: "n1"), incarnation: 1)
        let holder = try await broker.requestLock("job")
        let waiter = try await broker.requestLock("job")
        guard case .granted("job", let token)? = await next(holder) else { return XCTFail("no grant") }
        let waiting = await next(waiter)
        XCTAssertEqual(waiting, .waiting(lock: "job", position: 1))

        broker.clusterTransferRestarted(pattern: Broker.locksPattern)
        do {
            _ = try await broker.requestLock("other")
            XCTFail("a request while the table is taken again was accepted")
        } catch {
            XCTAssertEqual(error.status, 503)
        }
        // The primary's table: the waiter's request holds, with a larger
        // token; the holder's request never made it.
        var primary = LockTable(limits: BrokerSettings().locks.table, firstToken: token + 5)
        _ = primary.request("job", LockRequest(owner: me, id: waiter.id))
        XCTAssertTrue(broker.clusterApplyCheckpoint(pattern: Broker.locksPattern, chunk: primary.encoded(), first: true, last: true))
        let lost = await next(holder)
        guard case .lost("job", token?, let reason)? = lost else { return XCTFail("\(String(describing: lost))") }
        XCTAssertTrue(reason.contains("not the cluster's"), reason)
        let granted = await next(waiter)
        XCTAssertEqual(granted, .granted(lock: "job", token: token + 5))
        XCTAssertTrue(broker.lockTable().ready)
    }

    func testUntilTheLockTableArrivesRequestsAre503() async throws {
        let (broker, _) = try await makeBroker(hold: true)
        do {
            _ = try await broker.requestLock("job")
            XCTFail("a request before the transfer was accepted")
        } catch {
            XCTAssertEqual(error.status, 503)
            XCTAssertTrue(error.description.contains("state transfer"), error.description)
        }
        XCTAssertFalse(broker.lockTable().ready)
    }

    func testTheCheckpointCarriesTheTableToAJoiner() async throws {
        let (provider, _) = try await makeBroker()
        let handle = try await provider.requestLock("job")
        let first = await next(handle)
        guard case .granted("job", let token)? = first else { return XCTFail("\(String(describing: first))") }
        var reader = provider.clusterCheckpoint(pattern: Broker.locksPattern)
        let (chunk, last) = reader.nextChunk(bytes: 1 << 20)
        XCTAssertTrue(last)
        let (joiner, _) = try await makeBroker(hold: true)
        XCTAssertTrue(joiner.clusterApplyCheckpoint(pattern: Broker.locksPattern, chunk: chunk, first: true, last: true))
        XCTAssertEqual(joiner.lockTable().nextToken, token + 1)
        XCTAssertEqual(joiner.lockTable().locks.first?.token, token)
        XCTAssertFalse(joiner.clusterApplyCheckpoint(pattern: Broker.locksPattern, chunk: [9, 9], first: true, last: true), "unreadable: asks another member")
    }
}
