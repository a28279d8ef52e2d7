import Foundation
import PiglixTestKit
import XCTest

/// Group views have their own identity (docs/protocol.md, "Records"): real
/// nodes, subscribers joining and leaving on several of them and a SIGKILL;
/// every `view` record of every stream, and `/v1/groups` on every node, give
/// one member list per (group, view) id, and the ids of one stream increase.
final class GroupViewTests: XCTestCase {
    func testEveryStreamAgreesOnEachGroupViewIdThroughJoinsLeavesAndAKill_P2() async throws {
        let cluster = try LocalCluster.loopback(3)
        // A closed stream is noticed at the next write: heartbeat often.
        for member in cluster.members { member.extraArguments = ["--heartbeat-ms", "300"] }
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let (n1, n2, n3) = (cluster.members[0], cluster.members[1], cluster.members[2])
        let url = { (node: ClusterMember) in "\(node.base)/v1/subscribe?topic=g.>" }

        var streams: [CurlStream] = []
        let first = try CurlStream(http2: url(n1))
        try await first.waitUntilLive()
        streams.append(first)
        let second = try CurlStream(http2: url(n2))
        try await second.waitUntilLive()
        streams.append(second)
        let third = try CurlStream(http2: url(n3))
        try await third.waitUntilLive()
        streams.append(third)
        try await first.waitFor("n1 sees three members") { self.members(in: $0.views.last).count == 3 }
        // n2's only subscriber leaves: the group shrinks without a cluster view change.
        second.kill()
        try await first.waitFor("n1 sees n2 leave the group") { self.members(in: $0.views.last) == ["n1", "n3"] }
        let again = try CurlStream(http2: url(n2))
        try await again.waitUntilLive()
        streams.append(again)
        try await first.waitFor("n1 sees n2 back") { self.members(in: $0.views.last).count == 3 }
        // A crash: the cluster view changes and the group with it.
        n3.kill()
        try await first.waitFor("n1 sees n3 gone") { self.members(in: $0.views.last) == ["n1", "n2"] }
        try await again.waitFor("n2 sees n3 gone") { self.members(in: $0.views.last) == ["n1", "n2"] }
        try await Task.sleep(for: .milliseconds(300))

        var byID: [Int: (members: [String], stream: Int)] = [:]
        for (index, stream) in streams.enumerated() {
            var last = -1
            for record in stream.views {
                let id = record["view"] as? Int ?? -1
                let members = self.members(in: record)
                guard id > 0 else { continue }  // 0: no group view known yet (docs/protocol.md)
                XCTAssertGreaterThanOrEqual(id, last, "stream \(index): view ids go back: \(stream.views)")
                last = id
                if let seen = byID[id] {
                    XCTAssertEqual(seen.members, members, "group view \(id): stream \(seen.stream) saw \(seen.members), stream \(index) saw \(members)")
                } else {
                    byID[id] = (members, index)
                }
            }
        }
        XCTAssertGreaterThanOrEqual(byID.count, 4, "the group went through at least four views: \(byID)")
        for node in [n1, n2] {
            let groups = Curl.json("\(node.base)/v1/groups")?["groups"] as? [[String: Any]] ?? []
            let g = groups.first { $0["group"] as? String == "g.>" }
            let id = g?["view"] as? Int ?? -1
            XCTAssertEqual(byID[id]?.members, (g?["members"] as? [String])?.sorted(), "/v1/groups on \(node.name): \(groups)")
        }
    }

    private func members(in record: [String: Any]?) -> [String] {
        (record?["members"] as? [String] ?? []).sorted()
    }
}
