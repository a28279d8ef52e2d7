import Foundation
import PiglixTestKit
import XCTest

/// Work queues (docs/patterns.md, "Work queues") on real `piglix serve`
/// processes, with curl over HTTP/2 and HTTP/1.1: each message to exactly
/// one member (Q1), what a member held when its stream closed or its node
/// was SIGKILLed goes to the next member marked `redelivered` (Q2), and an
/// acked message is never delivered again (Q3).
final class WorkQueueTests: XCTestCase {
    /// `piglix_queue_members` of a node's `/metrics`.
    private func queueMembers(_ base: String) -> Int {
        let text = Curl.request(["--http2-prior-knowledge", "\(base)/metrics"]).body
        for line in text.split(separator: "\n") where line.hasPrefix("piglix_queue_members ") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return -1
    }

    private func waitForMembers(_ count: Int, on bases: [String]) async throws {
        try await poll("\(count) queue members on \(bases)", timeout: .seconds(20), interval: .milliseconds(50)) {
            bases.allSatisfy { self.queueMembers($0) == count }
        }
    }

    /// `POST /v1/ack`: the per-id results.
    private func ack(_ base: String, queue: String, ids: [String], http2: Bool = true) throws -> [String] {
        let body = try JSONSerialization.data(withJSONObject: ["queue": queue, "ids": ids])
        let reply = Curl.request(
            (http2 ? ["--http2-prior-knowledge"] : ["--http1.1"]) + ["-H", "Content-Type: application/json", "--data-binary", String(decoding: body, as: UTF8.self),
            "\(base)/v1/ack"])
        XCTAssertEqual(reply.httpCode, 200, reply.body)
        return (reply.json["results"] as? [[String: Any]] ?? []).map { $0["result"] as? String ?? "?" }
    }

    private func ids(_ stream: CurlStream) -> [String] { stream.messages.compactMap { $0["id"] as? String } }

    func testSingleNodeMembersShareDisjointlyAndAClosedStreamsMessagesAreRedelivered_Q1_Q2_Q3() async throws {
        let server = try await startTestServer()
        let base = "http://127.0.0.1:\(server.port)"
        let a = try CurlStream(http2: "\(base)/v1/subscribe?topic=jobs.>&queue=work")
        let b = try CurlStream(["--http1.1", "\(base)/v1/subscribe?topic=jobs.>&queue=work"])
        try await waitForMembers(2, on: [base])
        let count = 20
        for i in 0..<count {
            let reply = Curl.publish(base, topic: "jobs.j\(i % 3)", data: "m\(i)")
            XCTAssertEqual(reply.httpCode, 202, reply.body)
        }
        try await poll("all \(count) jobs handed out") { a.payloads.count + b.payloads.count >= count }
        try await Task.sleep(for: .milliseconds(200))
        // Q1: a disjoint share each, the union is everything, in order per member.
        XCTAssertEqual(Set(a.payloads).intersection(b.payloads), [])
        XCTAssertEqual(Set(a.payloads).union(b.payloads), Set((0..<count).map { "m\($0)" }))
        XCTAssertEqual(a.payloads.count + b.payloads.count, count)
        XCTAssertFalse(a.payloads.isEmpty)
        XCTAssertFalse(b.payloads.isEmpty)
        XCTAssertTrue((a.messages + b.messages).allSatisfy { $0["queue"] as? String == "work" && $0["redelivered"] == nil })
        // b acks its share; a acks its first and then its stream closes.
        XCTAssertEqual(try ack(base, queue: "work", ids: ids(b), http2: false), Array(repeating: "acked", count: b.payloads.count))
        let aFirst = ids(a)[0]
        XCTAssertEqual(try ack(base, queue: "work", ids: [aFirst, aFirst]), ["acked", "unknown"])
        let unacked = Array(a.payloads.dropFirst())
        a.stop()
        // Q2: b gets exactly a's unacked messages, marked redelivered, with the same ids.
        try await b.waitFor("a's \(unacked.count) unacked messages") { $0.payloads.count >= self.ids(b).count && $0.payloads.count >= count - 1 }
        let again = Array(b.messages.dropFirst(count - a.payloads.count))
        XCTAssertEqual(again.compactMap { $0["data"] as? String }, unacked)
        XCTAssertTrue(again.allSatisfy { $0["redelivered"] as? Bool == true })
        XCTAssertEqual(again.compactMap { $0["id"] as? String }, Array(ids(a).dropFirst()))
        // Q3: once acked, no one gets them again.
        XCTAssertEqual(try ack(base, queue: "work", ids: again.compactMap { $0["id"] as? String }), Array(repeating: "acked", count: unacked.count))
        let c = try CurlStream(http2: "\(base)/v1/subscribe?topic=jobs.>&queue=work")
        try await waitForMembers(2, on: [base])
        b.stop()
        try await waitForMembers(1, on: [base])
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(c.messages.count, 0, "acked messages came again: \(c.text)")
    }

    func testQueueRequestsAreValidated() async throws {
        let server = try await startTestServer()
        let base = "http://127.0.0.1:\(server.port)"
        for url in [
            "\(base)/v1/subscribe?topic=a&queue=bad%20name", "\(base)/v1/subscribe?topic=a&topic=b&queue=q",
            "\(base)/v1/subscribe?topic=a&queue=q&lastEventID=earliest",
        ] {
            let reply = Curl.request(["--http2-prior-knowledge", url])
            XCTAssertEqual(reply.httpCode, 400, url)
            XCTAssertTrue(reply.body.contains("\"detail\""), reply.body)
        }
        for body in [#"{"queue":"q"}"#, #"{"queue":"q","ids":[1]}"#, #"{"queue":"b a d","ids":["x"]}"#, "[]", #"{"queue":"q","ids":["nope"]}"#] {
            let reply = Curl.request(["--http2-prior-knowledge", "--data-binary", body, "\(base)/v1/ack"])
            XCTAssertEqual(reply.httpCode, 400, body + " → " + reply.body)
        }
        let many = try JSONSerialization.data(withJSONObject: ["queue": "q", "ids": (0...1000).map { "00000000-\($0)" }])
        let reply = Curl.request(["--http2-prior-knowledge", "--data-binary", String(decoding: many, as: UTF8.self), "\(base)/v1/ack"])
        XCTAssertEqual(reply.httpCode, 413, reply.body)
    }

    func testUnackedMessagesOfAKilledNodeGoToTheNextCohort_Q2() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let (n1, n2, n3) = (cluster.member("n1"), cluster.member("n2"), cluster.member("n3"))
        let survivor = try CurlStream(http2: "\(n2.base)/v1/subscribe?topic=work.*&queue=jobs")
        let victim = try CurlStream(http2: "\(n3.base)/v1/subscribe?topic=work.*&queue=jobs")
        try await waitForMembers(2, on: cluster.members.map(\.base))
        let count = 20
        for i in 0..<count {
            // fifo asked: the entry node sends it total, as a queue takes it.
            let reply = Curl.publish(n1.base, topic: "work.a", data: "j\(i)")
            XCTAssertEqual(reply.httpCode, 202, reply.body)
            XCTAssertTrue(reply.body.contains("total"), reply.body)
        }
        try await poll("all \(count) jobs handed out", timeout: .seconds(15)) { survivor.payloads.count + victim.payloads.count >= count }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(Set(survivor.payloads).intersection(victim.payloads), [], "Q1: each job to one member")
        XCTAssertEqual(survivor.payloads.count + victim.payloads.count, count)
        let held = victim.payloads
        let heldIDs = ids(victim)
        XCTAssertFalse(held.isEmpty)
        let before = survivor.payloads.count
        // The survivor acks what it has; the victim's node dies unacked.
        XCTAssertEqual(try ack(n1.base, queue: "jobs", ids: ids(survivor)), Array(repeating: "acked", count: before))
        n3.kill()
        try await cluster.waitForView(["n1", "n2"], on: [n1, n2])
        try await survivor.waitFor("the killed node's \(held.count) jobs", timeout: .seconds(20)) { $0.payloads.count >= before + held.count }
        try await Task.sleep(for: .milliseconds(300))
        let taken = Array(survivor.messages.dropFirst(before))
        XCTAssertEqual(taken.compactMap { $0["data"] as? String }, held, "exactly the victim's jobs, in order")
        XCTAssertTrue(taken.allSatisfy { $0["redelivered"] as? Bool == true })
        XCTAssertEqual(taken.compactMap { $0["id"] as? String }, heldIDs, "the same cluster-wide ids")
        XCTAssertEqual(Set(survivor.payloads), Set((0..<count).map { "j\($0)" }), "none lost")
        XCTAssertEqual(try ack(n2.base, queue: "jobs", ids: heldIDs), Array(repeating: "acked", count: held.count))
        XCTAssertEqual(try ack(n1.base, queue: "jobs", ids: heldIDs), Array(repeating: "unknown", count: held.count))
    }

    func testAClosedStreamsMessagesGoToTheNextCohortAcrossNodes_Q2() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let (n1, n2, n3) = (cluster.member("n1"), cluster.member("n2"), cluster.member("n3"))
        let stays = try CurlStream(http2: "\(n2.base)/v1/subscribe?topic=work.*&queue=jobs&format=sse")
        let leaves = try CurlStream(["--http1.1", "\(n3.base)/v1/subscribe?topic=work.*&queue=jobs"])
        try await waitForMembers(2, on: cluster.members.map(\.base))
        for i in 0..<12 { XCTAssertEqual(Curl.publish(n1.base, topic: "work.b", data: "k\(i)", level: "safe").httpCode, 200) }
        try await leaves.waitFor("its share") { $0.payloads.count >= 6 }
        let held = leaves.payloads
        leaves.stop()
        // SSE: the JSON records are in the `data:` lines.
        func sse(_ s: CurlStream) -> [[String: Any]] {
            s.text.split(separator: "\n").filter { $0.hasPrefix("data: ") }.compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.dropFirst(6).utf8))) as? [String: Any]
            }
        }
        try await stays.waitFor("all 12 jobs") { _ in sse(stays).count >= 12 }
        let records = sse(stays)
        let redelivered = records.filter { $0["redelivered"] as? Bool == true }.compactMap { $0["data"] as? String }
        XCTAssertEqual(redelivered, held)
        XCTAssertEqual(Set(records.compactMap { $0["data"] as? String }), Set((0..<12).map { "k\($0)" }))
        XCTAssertTrue(stays.text.contains("event: message\nid: v"), "SSE records carry the agreed id")
    }

    /// A member's node cut off in a minority (network namespaces): the
    /// majority's member gets what it held, redelivered; when the network
    /// heals, the cut-off node rejoins as a new incarnation and ends its
    /// queue stream with a reason.
    func testAMemberCutOffInAMinorityLosesItsMessagesToTheMajority_Q2() async throws {
        let (network, cluster, members) = try await startNamespaceCluster()
        let majority = try CurlStream(http2: "\(members[1].base)/v1/subscribe?topic=work.*&queue=jobs")
        let minority = try CurlStream(http2: "\(members[2].base)/v1/subscribe?topic=work.*&queue=jobs")
        try await waitForMembers(2, on: members.map(\.base))
        for i in 0..<10 { XCTAssertEqual(Curl.publish(members[0].base, topic: "work.c", data: "p\(i)", level: "safe").httpCode, 200) }
        try await poll("all 10 handed out") { majority.payloads.count + minority.payloads.count >= 10 }
        let held = minority.payloads
        XCTAssertFalse(held.isEmpty)
        let before = majority.payloads.count
        network.cut(2, 0)
        network.cut(2, 1)
        try await cluster.waitForView(["n1", "n2"], on: [members[0], members[1]])
        try await majority.waitFor("the cut-off member's \(held.count) jobs", timeout: .seconds(20)) { $0.payloads.count >= before + held.count }
        let taken = Array(majority.messages.dropFirst(before))
        XCTAssertEqual(taken.compactMap { $0["data"] as? String }, held)
        XCTAssertTrue(taken.allSatisfy { $0["redelivered"] as? Bool == true })
        try await minority.waitFor("a view record with primary false") { s in s.views.contains { $0["primary"] as? Bool == false } }
        network.heal(2, 0)
        network.heal(2, 1)
        try await cluster.waitForView(["n1", "n2", "n3"], on: members, timeout: .seconds(30))
        try await minority.waitFor("the end of its queue stream", timeout: .seconds(20)) { s in
            s.records.contains { $0["type"] as? String == "end" && ($0["reason"] as? String ?? "").contains("rejoined") }
        }
        XCTAssertEqual(minority.payloads, held, "nothing more reached the cut-off member")
    }
}
