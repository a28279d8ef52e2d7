import Foundation
import PiglixTestKit
import XCTest

/// Locks (issue 15 part 3, docs/patterns.md "Locks"): real `piglix`
/// processes and curl over HTTP/2 and HTTP/1.1. The properties L1–L5 are
/// named in the test names.
final class LockTests: XCTestCase {
    /// `POST /v1/locks/{name}` as a curl stream: HTTP/2 with prior
    /// knowledge, or HTTP/1.1.
    private func requestLock(_ base: String, _ name: String, http2: Bool = true, headers: [String] = []) throws -> CurlStream {
        try CurlStream((http2 ? ["--http2-prior-knowledge"] : ["--http1.1"]) + ["-X", "POST"] + headers.flatMap { ["-H", $0] } + ["\(base)/v1/locks/\(name)"])
    }

    private func records(_ s: CurlStream, _ type: String) -> [[String: Any]] {
        s.records.filter { $0["type"] as? String == type }
    }

    private func grantedToken(_ s: CurlStream) -> Int? { records(s, "granted").first?["token"] as? Int }

    private func waitGranted(_ s: CurlStream, timeout: Duration = .seconds(15), file: StaticString = #filePath, line: UInt = #line) async throws -> Int {
        try await s.waitFor("a granted record", timeout: timeout, file: file, line: line) { self.grantedToken($0) != nil }
        return grantedToken(s)!
    }

    /// Waits until `base` takes lock calls (its lock table transferred, in
    /// the primary component): `GET /v1/locks` says ready.
    private func waitReady(_ base: String) async throws {
        try await poll("\(base) takes lock calls", timeout: .seconds(30)) { Curl.json("\(base)/v1/locks")?["ready"] as? Bool == true }
    }

    // MARK: One node

    func testSingleNodeGrantsInRequestOrderAndReleasesOnCloseAndOnDelete_L1_L2() async throws {
        let server = try await startTestServer()
        let base = server.base
        let first = try requestLock(base, "orders.batch")
        let firstToken = try await waitGranted(first)
        let second = try requestLock(base, "orders.batch", http2: false)
        try await second.waitFor("waiting at position 1") { self.records($0, "waiting").last?["position"] as? Int == 1 }
        let third = try requestLock(base, "orders.batch")
        try await third.waitFor("waiting at position 2") { self.records($0, "waiting").last?["position"] as? Int == 2 }

        let list = Curl.json("\(base)/v1/locks")
        let locks = list?["locks"] as? [[String: Any]] ?? []
        XCTAssertEqual(locks.count, 1, "\(String(describing: list))")
        XCTAssertEqual((locks.first?["holder"] as? [String: Any])?["token"] as? Int, firstToken)
        XCTAssertEqual((locks.first?["queue"] as? [[String: Any]])?.count, 2)

        // Closing the holder's stream releases: the oldest waiter is next.
        first.stop()
        let secondToken = try await waitGranted(second)
        XCTAssertGreaterThan(secondToken, firstToken, "L2: fencing tokens increase")
        try await third.waitFor("moved up to position 1") { self.records($0, "waiting").last?["position"] as? Int == 1 }

        // DELETE with another token: 409; unknown lock: 404; bad token: 400; bad name: 400.
        let stale = Curl.request(["--http2-prior-knowledge", "-X", "DELETE", "\(base)/v1/locks/orders.batch?token=\(firstToken)"])
        XCTAssertEqual(stale.httpCode, 409, stale.body)
        XCTAssertTrue(stale.body.contains("problem") || stale.body.contains("\"status\":409"), stale.body)
        XCTAssertEqual(Curl.request(["-X", "DELETE", "\(base)/v1/locks/nobody?token=1"]).httpCode, 404)
        XCTAssertEqual(Curl.request(["-X", "DELETE", "\(base)/v1/locks/orders.batch?token=x"]).httpCode, 400)
        let badName = Curl.request(["-X", "POST", "\(base)/v1/locks/bad%20name"])
        XCTAssertEqual(badName.httpCode, 400)
        XCTAssertTrue(badName.body.contains("lock name"), badName.body)

        // DELETE with the holder's token: its stream ends with `released`.
        let deleted = Curl.request(["--http1.1", "-X", "DELETE", "\(base)/v1/locks/orders.batch?token=\(secondToken)"])
        XCTAssertEqual(deleted.httpCode, 204, deleted.body)
        try await second.waitFor("a released record") { !self.records($0, "released").isEmpty }
        try await second.waitForExit()
        let thirdToken = try await waitGranted(third)
        XCTAssertGreaterThan(thirdToken, secondToken)
        third.stop()
        try await poll("the lock is gone once nobody holds or waits", timeout: .seconds(5)) {
            (Curl.json("\(base)/v1/locks")?["locks"] as? [Any])?.isEmpty == true
        }
    }

    /// A single node keeps no table across a restart, but a new history's
    /// tokens start from the wall clock, so they still grow (L2).
    func testSingleNodeTokensKeepGrowingAcrossARestart_L2() async throws {
        let server = try await startTestServer()
        let before = try requestLock(server.base, "restart")
        let first = try await waitGranted(before)
        before.stop()
        server.kill()
        try await server.start()
        let after = try requestLock(server.base, "restart")
        let second = try await waitGranted(after)
        XCTAssertGreaterThan(second, first)
        after.stop()
    }

    func testSingleNodeLockStreamSpeaksSSEWhenAsked() async throws {
        let server = try await startTestServer()
        let stream = try requestLock(server.base, "sse-lock", headers: ["Accept: text/event-stream"])
        try await stream.waitForText("event: granted")
        XCTAssertTrue(stream.text.contains("data: {\"type\":\"granted\",\"lock\":\"sse-lock\",\"token\":"), stream.text)
        stream.stop()
    }

    // MARK: Three nodes

    func testLockPassesToNextWaiterWhenHolderNodeIsKilled_L3() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let (n1, n2, n3) = (cluster.member("n1"), cluster.member("n2"), cluster.member("n3"))
        for m in cluster.members { try await waitReady(m.base) }

        let holder = try requestLock(n1.base, "job")
        let token = try await waitGranted(holder)
        let waiter = try requestLock(n2.base, "job", http2: false)
        try await waiter.waitFor("waiting at position 1") { self.records($0, "waiting").last?["position"] as? Int == 1 }
        let behind = try requestLock(n3.base, "job")
        try await behind.waitFor("waiting at position 2") { self.records($0, "waiting").last?["position"] as? Int == 2 }
        // Every node lists the same holder and queue (the replicated table).
        for m in cluster.members {
            let lock = (Curl.json("\(m.base)/v1/locks")?["locks"] as? [[String: Any]])?.first
            XCTAssertEqual((lock?["holder"] as? [String: Any])?["node"] as? String, "n1", "\(m.name): \(String(describing: lock))")
            XCTAssertEqual((lock?["queue"] as? [[String: Any]])?.map { $0["node"] as? String }, ["n2", "n3"])
        }

        n1.kill()
        try await cluster.waitForView(["n2", "n3"], on: [n2, n3])
        let next = try await waitGranted(waiter, timeout: .seconds(20))
        XCTAssertGreaterThan(next, token, "L2: the next grant has a larger fencing token")
        try await behind.waitFor("moved up to position 1") { self.records($0, "waiting").last?["position"] as? Int == 1 }
        XCTAssertNil(grantedToken(behind), "L1: one holder at a time")

        // The restarted node gets the table by state transfer and continues
        // the token sequence (replicated state, not the node's memory).
        try n1.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        try await waitReady(n1.base)
        let nextToken = Curl.json("\(n1.base)/v1/locks")?["next_token"] as? Int ?? 0
        XCTAssertGreaterThan(nextToken, next, "the restarted node's table continues the sequence")
        waiter.stop()
        let last = try await waitGranted(behind)
        XCTAssertGreaterThan(last, next)
        behind.stop()
    }

    func testLockPassesToNextWaiterWhenHolderStreamCloses_L3() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        for m in cluster.members { try await waitReady(m.base) }
        let holder = try requestLock(cluster.member("n3").base, "report")
        let token = try await waitGranted(holder)
        let waiter = try requestLock(cluster.member("n1").base, "report")
        try await waiter.waitFor("waiting") { !self.records($0, "waiting").isEmpty }
        holder.stop()
        let next = try await waitGranted(waiter)
        XCTAssertGreaterThan(next, token)
        // DELETE on a third node with the holder's token releases it there too.
        let deleted = Curl.request(["--http2-prior-knowledge", "-X", "DELETE", "\(cluster.member("n2").base)/v1/locks/report?token=\(next)"])
        XCTAssertEqual(deleted.httpCode, 204, deleted.body)
        try await waiter.waitFor("released") { !self.records($0, "released").isEmpty }
    }

    /// The holder's node alone on one side of a partition: its stream ends
    /// with a reason (lease, then the primary component lost) before the
    /// majority installs a view without it and grants the lock again.
    func testPartitionedHolderLosesLockBeforeMajorityGrantsIt_L4() async throws {
        let (network, cluster, members) = try await startNamespaceCluster()
        for m in members { try await waitReady(m.base) }

        let holder = try requestLock(members[2].base, "leader")
        let token = try await waitGranted(holder)
        let waiter = try requestLock(members[0].base, "leader")
        try await waiter.waitFor("waiting") { !self.records($0, "waiting").isEmpty }

        // Both links, both ways, at once (four `ip` commands in parallel):
        // a partition is symmetric, and cutting one link after the other
        // would give one side a head start of a few `ip` runs.
        network.cutAtOnce([(2, 0), (2, 1)])
        let cutAt = ContinuousClock.now
        var lostAt: ContinuousClock.Duration?
        var grantedAt: ContinuousClock.Duration?
        try await poll("the holder lost the lock and the waiter got it", timeout: .seconds(20), interval: .milliseconds(5)) {
            if lostAt == nil, !self.records(holder, "lost").isEmpty { lostAt = ContinuousClock.now - cutAt }
            if grantedAt == nil, self.grantedToken(waiter) != nil { grantedAt = ContinuousClock.now - cutAt }
            return lostAt != nil && grantedAt != nil
        }
        let lost = records(holder, "lost").first
        XCTAssertEqual(lost?["token"] as? Int, token)
        XCTAssertNotNil(lost?["reason"] as? String)
        XCTAssertLessThan(lostAt!, grantedAt!, "L4: the minority's holder ends before the majority grants (lost after \(lostAt!), granted after \(grantedAt!))")
        XCTAssertGreaterThan(grantedToken(waiter) ?? 0, token)
        print("partition: holder lost after \(lostAt!) (\(lost?["reason"] ?? "")), waiter granted after \(grantedAt!)")
        // The minority refuses lock calls (503).
        let refused = Curl.request(["--http2-prior-knowledge", "-i", "-X", "POST", "\(members[2].base)/v1/locks/other"], timeout: 3)
        XCTAssertEqual(refused.httpCode, 503, refused.body)
        XCTAssertTrue(refused.body.lowercased().contains("retry-after:"))

        network.heal(2, 0)
        network.heal(2, 1)
        try await cluster.waitForView(["n1", "n2", "n3"], on: members)
        try await waitReady(members[2].base)
        let table = Curl.json("\(members[2].base)/v1/locks")?["locks"] as? [[String: Any]]
        XCTAssertEqual((table?.first?["holder"] as? [String: Any])?["node"] as? String, "n1", "the rejoined node took the majority's table")
    }
}

extension NamespaceNetwork {
    /// Cuts every pair both ways with all the `ip` commands running at once.
    func cutAtOnce(_ pairs: [(Int, Int)]) {
        var processes: [Process] = []
        for (a, b) in pairs {
            for (from, to) in [(a, b), (b, a)] {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
                process.arguments = ["netns", "exec", names[from], "ip", "route", "add", "blackhole", "\(address(to))/32"]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                if (try? process.run()) != nil { processes.append(process) }
            }
        }
        for process in processes { process.waitUntilExit() }
    }
}
