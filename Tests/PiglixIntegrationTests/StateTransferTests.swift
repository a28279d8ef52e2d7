import Foundation
import PiglixTestKit
import XCTest

/// State transfer at the sizes retention allows (P10): a checkpoint travels
/// in chunks under flow control (docs/virtual-synchrony.md, "Lightweight groups
/// and state transfer").
final class StateTransferTests: XCTestCase {
    /// 200 MB retained under `big.>` on n1 (50 topics, four 1 MB messages
    /// each: the default per-topic and total retention limits hold it all),
    /// then a first subscriber on n2 asks for `earliest`: it gets every
    /// message, in per-topic order, and the cluster view does not change
    /// (heartbeats kept flowing while 200 MB moved).
    func testJoinerReceives200MBCheckpointInOrderWithoutAViewChange_P10() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let n1 = cluster.member("n1")
        let n2 = cluster.member("n2")
        let viewBefore = try XCTUnwrap(Curl.json("\(n1.base)/v1/cluster")?["view"] as? Int)

        // A subscriber on n1 makes it a member of the group; it reads into
        // /dev/null.
        let holder = try Self.curlToFile("\(n1.base)/v1/subscribe?topic=big.>", path: "/dev/null")
        defer { holder.terminate() }
        try await poll("n1 in the group big.>") {
            let groups = Curl.json("\(n1.base)/v1/groups")?["groups"] as? [[String: Any]] ?? []
            return groups.contains { $0["group"] as? String == "big.>" && ($0["members"] as? [String] ?? []).contains("n1") }
        }

        let topics = 50, perTopic = 4, size = 1_000_000
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-big-\(getpid())")
        defer { try? FileManager.default.removeItem(at: body) }
        for round in 0..<perTopic {
            for t in 0..<topics {
                let head = Array("t\(t)-\(round):".utf8)
                try Data(head + [UInt8](repeating: UInt8(ascii: "x"), count: size - head.count)).write(to: body)
                let result = try Curl.run(["-s", "-o", "/dev/null", "--data-binary", "@\(body.path)", "\(n1.base)/v1/topics/big.t\(t)"], statusCode: true)
                XCTAssertEqual(result.httpCode, 202, "publish \(t)-\(round)")
            }
        }

        let output = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-joiner-\(getpid()).ndjson")
        defer { try? FileManager.default.removeItem(at: output) }
        let joiner = try Self.curlToFile("\(n2.base)/v1/subscribe?topic=big.>&lastEventID=earliest", path: output.path)
        defer { joiner.terminate() }
        var lines: [Data] = []
        try await poll("all \(topics * perTopic) messages at the joiner", timeout: .seconds(180), interval: .milliseconds(500)) {
            lines = Self.messageLines(output)
            return lines.count >= topics * perTopic
        }
        XCTAssertEqual(lines.count, topics * perTopic, "no duplicates")
        var next = [Int](repeating: 0, count: topics)
        for line in lines {
            let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: line) as? [String: Any])
            let data = try XCTUnwrap(record["data"] as? String)
            XCTAssertEqual(data.utf8.count, size)
            let label = data.prefix(while: { $0 != ":" }).dropFirst().split(separator: "-").compactMap { Int($0) }
            XCTAssertEqual(record["topic"] as? String, "big.t\(label[0])")
            XCTAssertEqual(label[1], next[label[0]], "per-topic order of big.t\(label[0])")
            next[label[0]] += 1
        }
        for member in cluster.members {
            XCTAssertEqual(Curl.json("\(member.base)/v1/cluster")?["view"] as? Int, viewBefore, "\(member.name) kept the view")
        }
        let peak = n2.peakRSS ?? 0
        print("state transfer of \(topics * perTopic * size) bytes: joiner n2 peak RSS \(peak >> 20) MiB, provider n1 peak RSS \((n1.peakRSS ?? 0) >> 20) MiB")
    }

    /// `curl` streaming a subscription into a file (or /dev/null), over
    /// HTTP/2 with prior knowledge.
    static func curlToFile(_ url: String, path: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-sN", "--http2-prior-knowledge", "-o", path, url]
        try process.run()
        return process
    }

    /// The `message` records written so far.
    static func messageLines(_ file: URL) -> [Data] {
        guard let data = try? Data(contentsOf: file) else { return [] }
        let prefix = Data(#"{"type":"message""#.utf8)
        return data.split(separator: UInt8(ascii: "\n")).filter { $0.starts(with: prefix) }.map { Data($0) }
    }
}
