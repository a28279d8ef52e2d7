import Foundation
import PiglixTestKit
import XCTest

/// Real `piglix serve` processes on loopback (and in network namespaces),
/// subscribed to and published on with curl over HTTP/2, under real faults:
/// SIGKILL, SIGSTOP/SIGCONT, restart, partitions. Properties are checked on
/// what subscribers receive and what publishers are acknowledged.
final class ClusterTests: XCTestCase {

    /// Messages of one publisher in the order a subscriber got them.
    private func order(_ subscriber: CurlStream, prefix: String) -> [Int] {
        subscriber.payloads.filter { $0.hasPrefix(prefix) }.compactMap { Int($0.dropFirst(prefix.count)) }
    }

    func testPublishesOnSeveralNodesReachSubscribersOnEveryNodeOnceInOrder_P5_P6_P7() async throws {
        let cluster = try LocalCluster.loopback(3)
        // Inter-node frames compressed (all but the smallest): same guarantees.
        for member in cluster.members { member.extraArguments = ["--cluster-compress-bytes", "64"] }
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let subscribers = try cluster.members.map { try CurlStream(http2: "\($0.base)/v1/subscribe?topic=orders.*") }
        for subscriber in subscribers { try await subscriber.waitUntilLive() }

        let levels = ["fifo", "total", "safe"]
        let publishers = [cluster.member("n1"), cluster.member("n3")]
        let count = 30
        let targets = publishers.map { (base: $0.base, name: $0.name) }
        await withTaskGroup(of: Void.self) { group in
            for publisher in targets {
                group.addTask {
                    for i in 0..<count {
                        let reply = Curl.publish(publisher.base, topic: "orders.\(publisher.name)", data: "\(publisher.name)-\(i)", level: levels[i % 3])
                        XCTAssertEqual(reply.httpCode, levels[i % 3] == "safe" ? 200 : 202, reply.body)
                    }
                }
            }
        }
        for subscriber in subscribers {
            try await subscriber.waitFor("all \(2 * count) messages") { $0.payloads.count >= 2 * count }
        }
        try await Task.sleep(for: .milliseconds(300))
        var agreed: [String]?
        for subscriber in subscribers {
            // P5: each message exactly once.
            XCTAssertEqual(subscriber.payloads.count, 2 * count)
            XCTAssertEqual(Set(subscriber.payloads).count, 2 * count)
            // P6: per publisher session, publish order.
            for publisher in publishers {
                XCTAssertEqual(order(subscriber, prefix: "\(publisher.name)-"), Array(0..<count), "FIFO of \(publisher.name)")
            }
            // P7: total and safe messages in one order everywhere.
            let ordered = subscriber.messages.filter { $0["delivery"] as? String != "fifo" }.compactMap { $0["data"] as? String }
            if let agreed { XCTAssertEqual(ordered, agreed, "total order differs between subscribers") } else { agreed = ordered }
        }
    }

    /// A streaming publish in a cluster keeps several batches in flight: each
    /// ack comes while the body is still open, acks keep input order although
    /// a `safe` record reaches its level after a later `fifo` one, and the
    /// session's messages arrive once each in publish order (P5, P6).
    func testStreamingPublishAcksArriveWhileTheBodyIsOpenInInputOrder_P5_P6() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let subscriber = try CurlStream(http2: "\(cluster.member("n2").base)/v1/subscribe?topic=flow.*")
        try await subscriber.waitUntilLive()
        let publisher = try CurlStream(
            http2: "\(cluster.member("n1").base)/v1/publish", headers: ["Content-Type: application/x-ndjson"], upload: true)

        func record(_ i: Int, _ level: String) -> String {
            #"{"topic":"flow.t\#(i % 3)","data":"f\#(i)","delivery":"\#(level)"}"# + "\n"
        }
        publisher.write(record(0, "safe"))
        try await publisher.waitFor("the first ack") { $0.records.count >= 1 }
        XCTAssertTrue(publisher.isRunning, "the first ack came while the request body is still open")

        let levels = ["safe", "fifo", "total"]
        let count = 300
        var expected = ["safe"]
        var block = ""
        for i in 1..<count {
            block += record(i, levels[i % 3])
            expected.append(levels[i % 3])
            if i % 50 == 0 {
                publisher.write(block)
                block = ""
            }
        }
        publisher.write(block)
        try await publisher.waitFor("\(count) acks") { $0.records.count >= count }
        XCTAssertTrue(publisher.isRunning, "every ack came while the request body is still open")
        publisher.closeInput()
        let acks = publisher.records
        XCTAssertEqual(acks.count, count)
        XCTAssertTrue(acks.allSatisfy { $0["ok"] as? Bool == true }, "\(acks.filter { $0["ok"] as? Bool != true }.prefix(3))")
        XCTAssertEqual(acks.map { $0["delivery"] as? String ?? "?" }, expected, "acks in input order")

        try await subscriber.waitFor("all \(count) messages") { $0.payloads.count >= count }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(subscriber.payloads.sorted(), (0..<count).map { "f\($0)" }.sorted(), "each message once")
        for t in 0..<3 {
            // Each topic carries one level here: per session and topic, publish order (P6).
            let got = subscriber.messages.filter { $0["topic"] as? String == "flow.t\(t)" }.compactMap { $0["data"] as? String }
            XCTAssertEqual(got, stride(from: t, to: count, by: 3).map { "f\($0)" }, "order on flow.t\(t)")
        }
        publisher.stop()
        subscriber.stop()
    }

    func testCoordinatorSIGKILLMidStreamSurvivorsAgreeAndGetEveryAckedSafeMessage_P3_P8() async throws {
        let cluster = try LocalCluster.loopback(5)
        try cluster.start()
        let all: Set<String> = ["n1", "n2", "n3", "n4", "n5"]
        let status = try await cluster.waitForView(all, on: cluster.members)
        let coordinator = try XCTUnwrap(status["coordinator"] as? String)
        let survivors = cluster.members.filter { $0.name != coordinator }
        let subscribers = try survivors.prefix(3).map { try CurlStream(http2: "\($0.base)/v1/subscribe?topic=pay.>") }
        for subscriber in subscribers { try await subscriber.waitUntilLive() }

        let acked = Locked<[String]>([])
        let stop = Locked(false)
        let publisherBase = survivors[3].base
        let publishing = Task.detached {
            var i = 0
            while !stop.withLock({ $0 }) {
                let reply = Curl.publish(publisherBase, topic: "pay.safe", data: "s\(i)", level: "safe")
                if reply.httpCode == 200 { acked.withLock { $0.append("s\(i)") } }
                i += 1
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let killedAt = ContinuousClock.now
        cluster.member(coordinator).kill()
        try await cluster.waitForView(all.subtracting([coordinator]), on: survivors)
        let viewChange = ContinuousClock.now - killedAt
        // A view change within 3 suspicion timeouts (plus polling slack).
        XCTAssertLessThan(viewChange, .milliseconds(3 * ClusterMember.suspicionMilliseconds + 500), "view change took \(viewChange)")
        try await Task.sleep(for: .milliseconds(500))
        stop.withLock { $0 = true }
        await publishing.value
        let ackedSafe = acked.withLock { $0 }
        XCTAssertGreaterThan(ackedSafe.count, 5, "the publisher made progress before and after the failure")
        for subscriber in subscribers {
            try await subscriber.waitFor("every acked safe message") { s in Set(ackedSafe).isSubset(of: Set(s.payloads)) }
        }
        // P3/P7: survivors delivered the same messages in the same order.
        let streams = subscribers.map { $0.payloads }
        let shortest = streams.map(\.count).min() ?? 0
        for stream in streams {
            XCTAssertEqual(Array(stream.prefix(shortest)), Array(streams[0].prefix(shortest)))
            XCTAssertEqual(Set(stream).count, stream.count, "no duplicates (P5)")
            let sequence = stream.compactMap { Int($0.dropFirst()) }
            XCTAssertEqual(sequence, sequence.sorted(), "publish order kept across the view change (P6)")
        }
        // Subscribers heard about the new view.
        for subscriber in subscribers {
            try await subscriber.waitFor("a view record without \(coordinator)") { s in
                s.views.contains { !($0["members"] as? [String] ?? [coordinator]).contains(coordinator) }
            }
        }
    }

    func testStoppedNodeIsExcludedThenRejoinsAsNewIncarnationWithStateTransfer() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let n3 = cluster.member("n3")
        let before = try XCTUnwrap(Curl.json("\(n3.base)/v1/cluster")?["incarnation"] as? Int)
        let subscriber = try CurlStream(http2: "\(n3.base)/v1/subscribe?topic=log.*")
        try await subscriber.waitUntilLive()
        // A member of the group on the other side holds what n3 misses.
        let holder = try CurlStream(http2: "\(cluster.member("n1").base)/v1/subscribe?topic=log.*")
        try await holder.waitUntilLive()
        XCTAssertEqual(Curl.publish(cluster.member("n1").base, topic: "log.a", data: "before").httpCode, 202)
        try await subscriber.waitFor("the message before the pause") { $0.payloads.contains("before") }

        n3.pause()
        try await cluster.waitForView(["n1", "n2"], on: [cluster.member("n1"), cluster.member("n2")])
        for i in 0..<5 { XCTAssertEqual(Curl.publish(cluster.member("n2").base, topic: "log.a", data: "while-\(i)").httpCode, 202) }
        n3.resume()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let after = try XCTUnwrap(Curl.json("\(n3.base)/v1/cluster")?["incarnation"] as? Int)
        XCTAssertGreaterThan(after, before, "it rejoined as a new incarnation")
        // State transfer: what was published while it was out reaches its subscriber.
        try await subscriber.waitFor("messages published while it was excluded") { s in
            (0..<5).allSatisfy { s.payloads.contains("while-\($0)") }
        }
        XCTAssertEqual(Curl.publish(cluster.member("n1").base, topic: "log.a", data: "after").httpCode, 202)
        try await subscriber.waitFor("the message after the rejoin") { $0.payloads.contains("after") }
        XCTAssertEqual(Set(subscriber.payloads).count, subscriber.payloads.count, "no duplicates (P5)")
    }

    func testRestartedNodeResumesFromLastEventIDObtainedOnAnotherNode() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let n2 = cluster.member("n2")
        let n1 = cluster.member("n1")
        let subscriber = try CurlStream(http2: "\(n2.base)/v1/subscribe?topic=r.*")
        try await subscriber.waitUntilLive()
        for i in 0..<6 { XCTAssertEqual(Curl.publish(cluster.member("n3").base, topic: "r.x", data: "m\(i)").httpCode, 202) }
        try await subscriber.waitFor("six messages") { $0.payloads.count == 6 }
        let resumeID = try XCTUnwrap(subscriber.messages[2]["id"] as? String)

        n1.kill()
        try await cluster.waitForView(["n2", "n3"], on: [n2, cluster.member("n3")])
        try n1.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        // Resume on the restarted node with an id from n2's stream.
        let resumed = try CurlStream(http2: "\(n1.base)/v1/subscribe?topic=r.*", headers: ["Last-Event-ID: \(resumeID)"])
        try await resumed.waitFor("the three messages after \(resumeID)") { $0.payloads.count >= 3 }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(resumed.payloads, ["m3", "m4", "m5"], "no loss and no duplicate inside the retained window")
    }

    func testPartitionedMinorityAnswers503ThenAllConvergeAfterHeal() async throws {
        let (network, cluster, members) = try await startNamespaceCluster()
        let subscriber = try CurlStream(http2: "\(members[2].base)/v1/subscribe?topic=p.*")
        try await subscriber.waitUntilLive()
        // A member of the group in the majority holds what n3 misses.
        let holder = try CurlStream(http2: "\(members[0].base)/v1/subscribe?topic=p.*")
        try await holder.waitUntilLive()

        // n3 alone on one side: the minority.
        network.cut(2, 0)
        network.cut(2, 1)
        try await cluster.waitForView(["n1", "n2"], on: [members[0], members[1]])
        try await subscriber.waitFor("a view record with primary false") { s in s.views.contains { $0["primary"] as? Bool == false } }
        let refused = Curl.request(["--http2-prior-knowledge", "-i", "-d", "x", "\(members[2].base)/v1/topics/p.x"])
        XCTAssertEqual(refused.httpCode, 503, refused.body)
        XCTAssertTrue(refused.body.lowercased().contains("retry-after:"), "503 carries Retry-After")
        XCTAssertEqual(Curl.json("\(members[2].base)/v1/cluster")?["primary"] as? Bool, false)
        XCTAssertEqual(Curl.request(["\(members[2].base)/readyz"]).httpCode, 503)
        XCTAssertEqual(Curl.publish(members[0].base, topic: "p.x", data: "during").httpCode, 202, "the majority goes on")

        network.heal(2, 0)
        network.heal(2, 1)
        try await cluster.waitForView(["n1", "n2", "n3"], on: members)
        XCTAssertEqual(Curl.request(["\(members[2].base)/readyz"]).httpCode, 200)
        for i in 0..<3 { XCTAssertEqual(Curl.publish(members[i].base, topic: "p.x", data: "healed-\(i)").httpCode, 202) }
        try await subscriber.waitFor("everything published after the heal, and what the majority took during the cut") { s in
            s.payloads.contains("during") && (0..<3).allSatisfy { s.payloads.contains("healed-\($0)") }
        }
    }

    /// The README's cluster walkthrough: examples/local-cluster.sh starts
    /// three nodes, publishes on n1 and sees the message on n2.
    func testLocalClusterExampleScriptPublishesOnOneNodeAndDeliversOnAnother() async throws {
        let run = try await runTool(
            ["/bin/bash", Repo.path("examples/local-cluster.sh"), "--check"], environment: ["PIGLIX_BIN": PiglixProcess.binaryPath],
            timeout: .seconds(300))
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("ok: published on n1, delivered on n2"), run.output)
    }
}
