import Foundation
import PiglixTestKit
import XCTest

/// Real `piglix serve` processes with `--cluster-key-file`: nodes holding the
/// key form the cluster; a node with another key or none never joins it, and
/// both sides log why (docs/operations.md, "Cluster key").
final class ClusterKeyTests: XCTestCase {
    private func keyFile(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-key-\(UUID().uuidString)")
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func testOnlyNodesHoldingTheClusterKeyJoinAndRefusalsAreLoggedOnBothSides() async throws {
        let cluster = try LocalCluster.loopback(4)
        let key = try keyFile("the key of this cluster, 32 bytes\n")
        let otherKey = try keyFile("the key of another cluster, also long\n")
        let (n1, n2, intruder, unkeyed) = (cluster.members[0], cluster.members[1], cluster.members[2], cluster.members[3])
        n1.extraArguments = ["--cluster-key-file", key]
        n2.extraArguments = ["--cluster-key-file", key]
        intruder.extraArguments = ["--cluster-key-file", otherKey]
        // All four at once: a peer's connection can come up before a node's
        // core starts (a seed learned then was lost, and n2 never joined).
        try cluster.start()
        try await cluster.waitForView(["n1", "n2"], on: [n1, n2], timeout: .seconds(40))
        // Give the outsiders several join attempts and bootstrap waits.
        try await Task.sleep(for: .seconds(3))
        let status = try await cluster.waitForView(["n1", "n2"], on: [n1, n2])
        XCTAssertEqual(Set(status["members"] as? [String] ?? []), ["n1", "n2"])
        for outsider in [intruder, unkeyed] {
            let seen = Curl.json("\(outsider.base)/v1/cluster") ?? [:]
            XCTAssertFalse((seen["members"] as? [String] ?? []).contains("n1"), "\(outsider.name) got into the cluster: \(seen)")
        }
        XCTAssertTrue(n1.logTail.contains("refused a cluster connection") || n2.logTail.contains("refused a cluster connection"))
        XCTAssertTrue(intruder.logTail.contains("does not hold this cluster's key"), intruder.logTail)
        XCTAssertTrue(unkeyed.logTail.contains("requires a cluster key and this node has none"), unkeyed.logTail)
        let metrics = Curl.request(["\(n1.base)/metrics"]).body
        let refused = metrics.split(separator: "\n").first { $0.hasPrefix("piglix_cluster_refused_peers_total ") }
        XCTAssertNotEqual(refused.flatMap { Int($0.split(separator: " ")[1]) } ?? 0, 0, "refusals are counted")
        // The keyed cluster works: a publish on n1 reaches a subscriber on n2.
        let subscriber = try CurlStream(http2: "\(n2.base)/v1/subscribe?topic=key.*")
        try await subscriber.waitUntilLive()
        XCTAssertEqual(Curl.publish(n1.base, topic: "key.t", data: "sealed", level: "safe").httpCode, 200)
        try await subscriber.waitFor("the message") { $0.payloads.contains("sealed") }
    }

    func testNodeWithoutAKeySaysAtStartUpThatItsClusterPortIsOpen() async throws {
        let node = try LocalCluster.loopback(1).members[0]
        try node.start()
        let deadline = ContinuousClock.now + .seconds(10)
        while !node.logTail.contains("cluster node started") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(node.logTail.contains("no cluster key: the cluster port admits any process"), node.logTail)
    }

    func testUnreadableOrShortKeyFileStopsTheNodeWithAClearError() throws {
        let short = try keyFile("too short\n")
        for (file, expected) in [(short, "at least 16"), ("/nonexistent/piglix.key", "cannot be read")] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: PiglixProcess.binaryPath)
            process.arguments = ["serve", "--cluster-listen", "127.0.0.1:0", "--cluster-key-file", file]
            let stderr = Pipe()
            process.standardError = stderr
            process.standardOutput = Pipe()
            try process.run()
            process.waitUntilExit()
            let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertNotEqual(process.terminationStatus, 0)
            XCTAssertTrue(text.contains(expected), text)
        }
    }
}
