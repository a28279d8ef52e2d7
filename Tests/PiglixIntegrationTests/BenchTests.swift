import Foundation
import PiglixTestKit
import XCTest

/// `piglix bench` as scripts/bench-peers.sh and scripts/bench-counts.sh run
/// it: short runs of each scenario (debug build, so no figure is checked),
/// checking what the scripts read — the RESULT line, the node CPU per
/// delivered message and the load average — and that every message arrived.
final class BenchTests: XCTestCase {
    /// The `key=value` fields of the output's RESULT line.
    private func resultFields(_ run: ToolRun, file: StaticString = #filePath, line: UInt = #line) throws -> [String: String] {
        let lines = run.output.split(separator: "\n").filter { $0.hasPrefix("RESULT ") }
        XCTAssertEqual(lines.count, 1, "one RESULT line: \(run)", file: file, line: line)
        var fields: [String: String] = [:]
        for pair in try XCTUnwrap(lines.first, file: file, line: line).split(separator: " ").dropFirst() {
            let parts = pair.split(separator: "=", maxSplits: 1)
            fields[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return fields
    }

    private func bench(_ arguments: [String], timeout: Duration = .seconds(90)) async throws -> ToolRun {
        let run = try await runTool([PiglixProcess.binaryPath, "bench"] + arguments, timeout: timeout)
        XCTAssertEqual(run.status, 0, "piglix bench \(arguments.joined(separator: " ")): \(run)")
        return run
    }

    func test_fanout_deliversEveryMessageToEachSubscriber_andPrintsNodeCPUPerDeliveredMessage() async throws {
        let run = try await bench(["fanout", "--subscribers", "3", "--seconds", "0.5", "--warmup", "0.2"])
        let fields = try resultFields(run)
        XCTAssertEqual(fields["scenario"], "fanout")
        XCTAssertEqual(fields["subs"], "3")
        XCTAssertEqual(fields["lost"], "0", "\(run)")
        let published = try XCTUnwrap(fields["published"].flatMap(Int.init))
        let delivered = try XCTUnwrap(fields["delivered"].flatMap(Int.init))
        // Measured messages only (the warm-up's are not counted), at each of the 3.
        XCTAssertGreaterThan(delivered, 0)
        XCTAssertLessThanOrEqual(delivered, 3 * published)
        XCTAssertEqual(delivered % 3, 0, "each subscriber gets every measured message: \(run)")
        XCTAssertGreaterThan(try XCTUnwrap(fields["delivered_msgs_per_s"].flatMap(Double.init)), 0)
        XCTAssertGreaterThan(try XCTUnwrap(fields["node_cpu_us_per_msg"].flatMap(Double.init)), 0, "\(run)")
        XCTAssertNotNil(fields["load1"].flatMap(Double.init), "\(run)")
        XCTAssertTrue(run.output.contains("node CPU per delivered message: "), "\(run)")
        XCTAssertTrue(run.output.contains("load average at start: "), "\(run)")
        XCTAssertTrue(run.output.contains("per subscriber: "), "\(run)")
    }

    func test_messages_runsAFixedCountOfMeasuredMessages() async throws {
        let run = try await bench(["1to1", "--messages", "2000", "--warmup", "0"])
        let fields = try resultFields(run)
        XCTAssertEqual(fields["scenario"], "1to1")
        XCTAssertEqual(fields["published"], "2000", "\(run)")
        XCTAssertEqual(fields["delivered"], "2000", "\(run)")
    }

    func test_badArguments_areRefused() async throws {
        for arguments in [["1to1", "--subscribers", "2"], ["fanout", "--subscribers", "0"], ["1to1", "--messages", "0"]] {
            let run = try await runTool([PiglixProcess.binaryPath, "bench"] + arguments)
            XCTAssertNotEqual(run.status, 0, "\(arguments): \(run)")
        }
    }

    func test_clusterFifo_runsAFixedCount_andPrintsNodeCPUPerDeliveredMessage_summedOverTheNodes() async throws {
        // Paced: a debug build on a busy machine refuses unpaced records (pending queue full).
        let run = try await bench(
            ["--nodes", "3", "fifo", "--messages", "1500", "--publishers", "2", "--warmup", "0.2", "--rate", "2000"], timeout: .seconds(120))
        let fields = try resultFields(run)
        XCTAssertEqual(fields["scenario"], "fifo")
        XCTAssertEqual(fields["nodes"], "3")
        // Exactly 1,500 measured sends, split between the 2 publishers; a
        // debug node on a busy machine may refuse some (pending queue full),
        // so deliveries are at most that many per subscriber.
        XCTAssertTrue(run.output.contains("(1500 measured over"), "\(run)")
        let subscribers = try XCTUnwrap(fields["subs"].flatMap(Int.init))
        let delivered = try XCTUnwrap(fields["delivered"].flatMap(Int.init))
        XCTAssertGreaterThan(delivered, 0, "\(run)")
        XCTAssertLessThanOrEqual(delivered, 1500 * subscribers, "\(run)")
        XCTAssertGreaterThan(try XCTUnwrap(fields["node_cpu_us_per_msg"].flatMap(Double.init)), 0, "\(run)")
        XCTAssertTrue(run.output.contains("node CPU per delivered message: "), "\(run)")
        XCTAssertTrue(run.output.contains(" + n3 "), "the sum names every node: \(run)")
    }
}
