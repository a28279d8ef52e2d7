import Foundation
import PiglixTestKit
import XCTest

/// A majority killed together and started again forms a primary view with
/// the survivors: the restarted nodes vote for their old seats from their
/// data directories (docs/virtual-synchrony.md, "A majority that restarts").
final class MajorityRestartTests: XCTestCase {
    func testTwoOfThreeKilledTogetherRestartAndRejoinAPrimaryViewKeepingSafeMessages_P9() async throws {
        try await killAndRestart(nodes: 3, victims: ["n1", "n2"])
    }

    func testThreeOfFiveKilledTogetherRestartAndRejoinAPrimaryView_P9() async throws {
        try await killAndRestart(nodes: 5, victims: ["n1", "n2", "n3"])
    }

    private func killAndRestart(nodes count: Int, victims: [String]) async throws {
        let cluster = try LocalCluster.loopback(count)
        try cluster.start()
        let everyone = Set(cluster.members.map(\.name))
        try await cluster.waitForView(everyone, on: cluster.members, timeout: .seconds(30))
        let survivor = cluster.members.first { !victims.contains($0.name) }!
        // A subscriber on the survivor holds the group: its retained history
        // is what the restarted nodes' subscribers get back.
        let holder = try CurlStream(http2: "\(survivor.base)/v1/subscribe?topic=keep.*")
        try await holder.waitUntilLive()
        for i in 0..<5 {
            XCTAssertEqual(Curl.publish(survivor.base, topic: "keep.a", data: "safe-\(i)", level: "safe").httpCode, 200)
        }

        for name in victims { cluster.member(name).kill() }
        try await poll("the survivors lose the primary", timeout: .seconds(20)) {
            Curl.json("\(survivor.base)/v1/cluster")?["primary"] as? Bool == false
        }
        for name in victims { try cluster.member(name).start() }
        // Within a few suspicion timeouts: one primary view with every node.
        try await cluster.waitForView(everyone, on: cluster.members, timeout: .seconds(30))

        let restarted = cluster.member(victims[0])
        XCTAssertEqual(Curl.publish(restarted.base, topic: "keep.a", data: "after", level: "safe").httpCode, 200)
        let late = try CurlStream(http2: "\(restarted.base)/v1/subscribe?topic=keep.*&lastEventID=earliest")
        try await late.waitFor("every acked safe message, then the new one") { s in
            (0..<5).allSatisfy { s.payloads.contains("safe-\($0)") } && s.payloads.contains("after")
        }
        XCTAssertEqual(late.payloads.filter { $0.hasPrefix("safe-") }, (0..<5).map { "safe-\($0)" }, "in order, once each")
    }
}
