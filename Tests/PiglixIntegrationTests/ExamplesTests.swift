import Foundation
import PiglixTestKit
import XCTest

/// Runs every example under examples/ against a real `piglix serve`, as a
/// user would run it, so the examples cannot rot.
final class ExamplesTests: XCTestCase {
    private var server: TestServer!
    private var url: String { server.base }
    private var environment: [String: String] { ["PIGLIX_URL": url] }

    override func setUp() async throws {
        server = try await startTestServer()
    }

    private func curlScript(_ name: String, _ arguments: [String] = [], input: String? = nil) async throws -> ToolRun {
        _ = try requireTool("curl", install: "apt-get install curl")
        let run = try await runTool([Repo.path("examples/curl/\(name)")] + arguments, environment: environment, input: input)
        XCTAssertEqual(run.status, 0, "examples/curl/\(name) \(arguments): \(run)")
        return run
    }

    private func startCurlScript(_ name: String, _ arguments: [String]) throws -> ScriptProcess {
        _ = try requireTool("curl", install: "apt-get install curl")
        return try ScriptProcess([Repo.path("examples/curl/\(name)")] + arguments, environment: environment)
    }

    /// The ids of the `{"ok":true,"id":…}` acks in `text`.
    private func ackIDs(_ text: String) -> [String] {
        ndjsonObjects(text).compactMap { $0["ok"] as? Bool == true ? $0["id"] as? String : nil }
    }

    // MARK: curl

    func test_curl_publish_andWildcardSubscribeNDJSON_deliversTheMessage() async throws {
        let subscriber = try startCurlScript("subscribe-ndjson.sh", ["ex.*", "other.>"])
        defer { subscriber.stop() }
        try await subscriber.waitForOutput(containing: #""type":"view","group":"ex.*""#)
        try await subscriber.waitForOutput(containing: #""group":"other.>""#)

        let published = try await curlScript("publish.sh", ["ex.a", "hello curl"])
        XCTAssertTrue(published.output.contains(#""ok":true"#), "\(published)")
        let fromStdin = try await curlScript("publish.sh", ["other.x.y"], input: "from stdin")
        let ids = ackIDs(published.output) + ackIDs(fromStdin.output)
        XCTAssertEqual(ids.count, 2)

        try await subscriber.waitForOutput(containing: #""data":"from stdin""#)
        let messages = ndjsonObjects(subscriber.output).filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.map { $0["topic"] as? String }, ["ex.a", "other.x.y"])
        XCTAssertEqual(messages.map { $0["data"] as? String }, ["hello curl", "from stdin"])
        XCTAssertEqual(messages.compactMap { $0["id"] as? String }, ids)
    }

    func test_curl_subscribeSSE_getsEventsWithIDs() async throws {
        let subscriber = try startCurlScript("subscribe-sse.sh", ["sse.>"])
        defer { subscriber.stop() }
        try await subscriber.waitForOutput(containing: "event: view")
        let ack = try await curlScript("publish.sh", ["sse.a.b", "over sse"])
        let id = try XCTUnwrap(ackIDs(ack.output).first)
        try await subscriber.waitForOutput(containing: #""data":"over sse""#)
        let output = subscriber.output
        XCTAssertTrue(output.contains("event: message\n"), output)
        XCTAssertTrue(output.contains("id: \(id)\n"), output)
        XCTAssertTrue(output.contains(#"data: {"type":"message","topic":"sse.a.b""#), output)
    }

    func test_curl_batchPublishGzip_acksEachRecordInOrder_andAnErrorAckDoesNotStopTheBatch() async throws {
        // The built-in sample: three records, three acks.
        let sample = try await curlScript("batch-publish-gzip.sh")
        let acks = ndjsonObjects(sample.output)
        XCTAssertEqual(acks.count, 3, "\(sample)")
        XCTAssertTrue(acks.allSatisfy { $0["ok"] as? Bool == true }, "\(sample)")
        XCTAssertEqual(acks.map { $0["delivery"] as? String }, ["fifo", "total", "safe"])

        // From a file, with one bad record in the middle.
        let directory = try Repo.scratchDirectory("batch")
        let file = "\(directory)/records.ndjson"
        try """
            {"topic":"batch.a","data":"one"}
            {"topic":"batch..bad","data":"two"}
            {"topic":"batch.b","data_b64":"AAH/","headers":{"unit":"C"}}

            """.write(toFile: file, atomically: true, encoding: .utf8)
        let mixed = try await curlScript("batch-publish-gzip.sh", [file])
        let mixedAcks = ndjsonObjects(mixed.output)
        XCTAssertEqual(mixedAcks.map { $0["ok"] as? Bool }, [true, false, true], "\(mixed)")
        XCTAssertEqual(mixedAcks[1]["status"] as? Int, 400)
        XCTAssertTrue((mixedAcks[1]["error"] as? String ?? "").contains("token 2"), "\(mixed)")

        // From standard input (`-`).
        let piped = try await curlScript("batch-publish-gzip.sh", ["-"], input: #"{"topic":"batch.c","data":"three"}"# + "\n")
        XCTAssertEqual(ackIDs(piped.output).count, 1, "\(piped)")

        // Everything accepted is retained: replay it.
        let replay = try startCurlScript("resume.sh", ["earliest", "batch.*", "sensors.>"])
        defer { replay.stop() }
        try await replay.waitForOutput(containing: #""data":"three""#)
        let messages = ndjsonObjects(replay.output).filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.map { $0["topic"] as? String }, [
            "sensors.paris.temp", "sensors.lyon.temp", "sensors.nice.temp", "batch.a", "batch.b", "batch.c",
        ])
        XCTAssertEqual(messages[4]["data_b64"] as? String, "AAH/")
        XCTAssertEqual((messages[4]["headers"] as? [String: String])?["unit"], "C")
    }

    func test_curl_resume_afterLastEventID_replaysOnlyLaterMessages_andNamesTheNewestRetained() async throws {
        var ids: [String] = []
        for word in ["first", "second", "third"] {
            let run = try await curlScript("publish.sh", ["rs.a", word])
            ids += ackIDs(run.output)
        }
        XCTAssertEqual(ids.count, 3)
        let resumed = try startCurlScript("resume.sh", [ids[0], "rs.*"])
        defer { resumed.stop() }
        try await resumed.waitForOutput(containing: #""data":"third""#)
        try await resumed.waitForOutput(containing: "last-event-id: \(ids[2])")
        let messages = ndjsonObjects(resumed.output).filter { $0["type"] as? String == "message" }
        XCTAssertEqual(messages.map { $0["data"] as? String }, ["second", "third"])
        XCTAssertEqual(messages.compactMap { $0["id"] as? String }, Array(ids[1...]))

        // Then it goes on live.
        _ = try await curlScript("publish.sh", ["rs.b", "fourth"])
        try await resumed.waitForOutput(containing: #""data":"fourth""#)
    }

    func test_curl_safePublish_answers200OnceStable_withTheMessageID() async throws {
        let run = try await curlScript("safe-publish.sh", ["orders.eu.created", #"{"order":42}"#])
        XCTAssertTrue(run.output.contains(#""delivery":"safe""#), "\(run)")
        XCTAssertTrue(run.output.contains("HTTP 200, message id "), "\(run)")
        let id = try XCTUnwrap(ackIDs(run.output).first)
        XCTAssertTrue(run.output.contains("message id \(id)"), "\(run)")
    }

    func test_curl_clusterStatus_printsClusterGroupsAndReadiness() async throws {
        let subscriber = try startCurlScript("subscribe-ndjson.sh", ["status.*"])
        defer { subscriber.stop() }
        try await subscriber.waitForOutput(containing: #""type":"view""#)
        let run = try await curlScript("cluster-status.sh")
        let lines = run.output.split(separator: "\n").map(String.init)
        let cluster = try XCTUnwrap(try parseJSON(lines[1]) as? [String: Any], "\(run)")
        XCTAssertEqual(cluster["node"] as? String, "n1")
        XCTAssertEqual(cluster["primary"] as? Bool, true)
        XCTAssertNotNil(cluster["clustered"] as? Bool)
        XCTAssertNotNil(cluster["members"] as? [Any])
        let groups = try XCTUnwrap(try parseJSON(lines[3]) as? [String: Any], "\(run)")
        let patterns = (groups["groups"] as? [[String: Any]] ?? []).compactMap { $0["group"] as? String }
        XCTAssertTrue(patterns.contains("status.*"), "\(run)")
        XCTAssertTrue(run.output.contains("(HTTP 200)"), "\(run)")
    }

    /// The number after `label=` in `text`.
    private func number(after label: String, in text: String) -> UInt64? {
        guard let range = text.range(of: "\(label)=") else { return nil }
        return UInt64(text[range.upperBound...].prefix { $0.isNumber })
    }

    func test_curl_lock_runsTheCommandWithItsFencingToken_andTheNextRequestWaitsItsTurn_L1_L2() async throws {
        let first = try startCurlScript("lock.sh", ["ex.lock", "sh", "-c", "echo first=$PIGLIX_LOCK_TOKEN; sleep 1; echo first-done"])
        defer { first.stop() }
        try await first.waitForOutput(containing: "first=")
        let second = try startCurlScript("lock.sh", ["ex.lock", "sh", "-c", "echo second=$PIGLIX_LOCK_TOKEN"])
        defer { second.stop() }
        try await second.waitForOutput(containing: "waiting for ex.lock")
        XCTAssertFalse(second.output.contains("second="), "granted while the first holds it: \(second.output)")
        let firstRun = try await first.waitForExit()
        let secondRun = try await second.waitForExit()
        XCTAssertEqual(firstRun.status, 0, "\(firstRun)")
        XCTAssertEqual(secondRun.status, 0, "\(secondRun)")
        XCTAssertTrue(firstRun.output.contains("first-done"), "\(firstRun)")
        let a = try XCTUnwrap(number(after: "first", in: firstRun.output), "\(firstRun)")
        let b = try XCTUnwrap(number(after: "second", in: secondRun.output), "\(secondRun)")
        XCTAssertGreaterThan(b, a, "L2: the next grant's fencing token is larger")
        // Both streams closed: nobody holds or waits.
        try await poll("the lock is released", timeout: .seconds(5)) {
            (Curl.json("\(self.url)/v1/locks")?["locks"] as? [Any])?.isEmpty == true
        }
    }

    func test_curl_workQueue_givesEachMessageToOneWorker_andAcksIt_Q1() async throws {
        let printer = try startCurlScript("work-queue.sh", ["ex.workers", "jobs.>"])
        defer { printer.stop() }
        let piped = try startCurlScript("work-queue.sh", ["ex.workers", "jobs.>", "cat"])
        defer { piped.stop() }
        func metric(_ name: String) -> Int? {
            Curl.request(["-s", "\(self.url)/metrics"]).body.split(separator: "\n").first { $0.hasPrefix("\(name) ") }
                .flatMap { Int($0.split(separator: " ").last ?? "") }
        }
        try await poll("two workers joined", timeout: .seconds(10)) { metric("piglix_queue_members") == 2 }
        for i in 1...6 { _ = try await curlScript("publish.sh", ["jobs.eu", "job \(i)"]) }
        try await poll("every job acked", timeout: .seconds(10)) { metric("piglix_queue_unacked") == 0 }
        func jobs(_ p: ScriptProcess) -> [String] {
            ndjsonObjects(p.output).filter { $0["queue"] as? String == "ex.workers" }.compactMap { $0["data"] as? String }
        }
        try await poll("each worker printed its share", timeout: .seconds(5)) { jobs(printer).count + jobs(piped).count == 6 }
        XCTAssertEqual(Set(jobs(printer)).intersection(jobs(piped)), [], "Q1: one worker per message")
        XCTAssertEqual(Set(jobs(printer) + jobs(piped)), Set((1...6).map { "job \($0)" }))
        XCTAssertEqual(jobs(printer).count, 3, "round robin: \(printer.output)")
    }

    // MARK: Python (httpx over HTTP/2, no Piglix library)

    func test_python_publisherAndStreamingSubscriber_overHTTP2_withResume() async throws {
        try await requirePythonModules(["httpx", "h2"], install: "pip install 'httpx[http2]'")
        let subscriber = try ScriptProcess(
            ["python3", Repo.path("examples/python/subscriber.py"), "--count", "3", "py.*"], environment: environment)
        defer { subscriber.stop() }
        try await subscriber.waitForOutput(containing: " of py.*: ")
        XCTAssertTrue(subscriber.output.contains("# connected over HTTP/2"), subscriber.output)

        let single = try await runTool(
            ["python3", Repo.path("examples/python/publisher.py"), "py.a", "one", "two"], environment: environment)
        XCTAssertEqual(single.status, 0, "\(single)")
        XCTAssertTrue(single.output.contains("# HTTP/2 202"), "\(single)")
        let batch = try await runTool(
            ["python3", Repo.path("examples/python/publisher.py"), "--batch", "--delivery", "safe", "py.b", "three"],
            environment: environment)
        XCTAssertEqual(batch.status, 0, "\(batch)")
        let ids = ackIDs(single.output) + ackIDs(batch.output)
        XCTAssertEqual(ids.count, 3, "\(single)\n\(batch)")

        let finished = try await subscriber.waitForExit()
        XCTAssertEqual(finished.status, 0, "\(finished)")
        XCTAssertTrue(finished.output.contains("\(ids[0]) py.a one\n\(ids[1]) py.a two\n\(ids[2]) py.b three\n"), "\(finished)")
        XCTAssertTrue(finished.output.contains("# last-id \(ids[2])"), "\(finished)")

        // A later run resumes after the first id: the other two, nothing else.
        let resumed = try await runTool(
            ["python3", Repo.path("examples/python/subscriber.py"), "--last-event-id", ids[0], "--count", "2", "py.*"],
            environment: environment, timeout: .seconds(30))
        XCTAssertEqual(resumed.status, 0, "\(resumed)")
        XCTAssertTrue(resumed.output.contains("\(ids[1]) py.a two\n\(ids[2]) py.b three\n"), "\(resumed)")
        XCTAssertFalse(resumed.output.contains(" py.a one"), "\(resumed)")
    }

    func test_python_idempotentPublisher_movesPastADeadNodeAndARetryGetsTheOriginalId() async throws {
        try await requirePythonModules(["httpx", "h2"], install: "pip install 'httpx[http2]'")
        let node = environment["PIGLIX_URL"] ?? ""
        // The first URL has no node behind it: the publisher moves on.
        let dead = "http://127.0.0.1:\(try freePort())"
        let first = try await runTool(
            ["python3", Repo.path("examples/python/publisher.py"), "--producer", "py-idem", "--url", "\(dead),\(node)", "py.idem", "one"],
            environment: environment, timeout: .seconds(30))
        XCTAssertEqual(first.status, 0, "\(first)")
        let again = try await runTool(
            ["python3", Repo.path("examples/python/publisher.py"), "--producer", "py-idem", "--url", node, "py.idem", "one"],
            environment: environment, timeout: .seconds(30))
        XCTAssertEqual(again.status, 0, "\(again)")
        XCTAssertEqual(ackIDs(first.output).count, 1, "\(first)")
        XCTAssertEqual(ackIDs(first.output), ackIDs(again.output), "a retry is acked with the original id")
    }

    func test_python_subscriber_invalidPattern_exitsWithTheProblemDetail() async throws {
        try await requirePythonModules(["httpx", "h2"], install: "pip install 'httpx[http2]'")
        let run = try await runTool(["python3", Repo.path("examples/python/subscriber.py"), "py..x"], environment: environment)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.output.contains("subscribe refused: 400"), "\(run)")
        XCTAssertTrue(run.output.contains("token 2"), "\(run)")
    }

    // MARK: Swift (PiglixClient from a package that depends on this one by path)

    /// Builds examples/swift once per test run (into .build/examples-swift).
    private func swiftExampleBinaries() async throws -> (publisher: String, subscriber: String) {
        let swift = try requireTool("swift", install: "a Swift 6 toolchain")
        let scratch = Repo.path(".build/examples-swift")
        var arguments = [swift, "build", "--package-path", Repo.path("examples/swift"), "--scratch-path", scratch]
        if let nice = which("nice") { arguments = [nice, "-n", "10"] + arguments }
        let build = try await runTool(arguments, timeout: .seconds(40 * 60))
        XCTAssertEqual(build.status, 0, "swift build of examples/swift failed:\n\(build.output.suffix(4000))")
        if build.status != 0 { throw TestServerError.exited(build.status) }
        let warnings = build.output.split(separator: "\n").filter { $0.contains("warning:") && $0.contains("examples/swift") }
        XCTAssertEqual(warnings, [], "examples/swift builds without warnings")
        let bin = try await runTool(arguments + ["--show-bin-path"])
        let directory = bin.output.split(separator: "\n").last.map(String.init) ?? ""
        return ("\(directory)/publisher", "\(directory)/subscriber")
    }

    func test_swift_publisherAndSubscriber_resumeAfterLastID_andReconnectAfterNodeRestart() async throws {
        let (publisher, subscriber) = try await swiftExampleBinaries()

        // Subscribe, publish, stop after one message with its id.
        let first = try ScriptProcess([subscriber, "--count", "1", "sw.*"], environment: environment)
        defer { first.stop() }
        try await first.waitForOutput(containing: " of sw.*: ")
        let published = try await runTool([publisher, "sw.a", "one"], environment: environment)
        XCTAssertEqual(published.status, 0, "\(published)")
        let firstRun = try await first.waitForExit()
        XCTAssertEqual(firstRun.status, 0, "\(firstRun)")
        XCTAssertTrue(firstRun.output.contains(" sw.a one\n"), "\(firstRun)")
        let lastID = try XCTUnwrap(firstRun.output.split(separator: "\n").last { $0.hasPrefix("# last-id ") }?.dropFirst(10))

        // Two more (safe), then a later run resumes after the last id it saw.
        let more = try await runTool([publisher, "--delivery", "safe", "sw.b", "two", "three"], environment: environment)
        XCTAssertEqual(more.status, 0, "\(more)")
        XCTAssertEqual(more.output.split(separator: "\n").filter { $0.hasSuffix(" 200") }.count, 2, "safe acks are 200: \(more)")
        let resumed = try await runTool([subscriber, "--after", String(lastID), "--count", "2", "sw.*"], environment: environment)
        XCTAssertEqual(resumed.status, 0, "\(resumed)")
        XCTAssertTrue(resumed.output.contains(" sw.b two\n") && resumed.output.contains(" sw.b three\n"), "\(resumed)")
        XCTAssertFalse(resumed.output.contains(" sw.a one"), "\(resumed)")

        // Standard input streams over one publish stream, one ack per line.
        let streamed = try await runTool([publisher, "sw.c"], environment: environment, input: "l1\nl2\nl3\n")
        XCTAssertEqual(streamed.status, 0, "\(streamed)")
        XCTAssertTrue(streamed.output.contains("3 published, 0 rejected"), "\(streamed)")
        let rejected = try await runTool([publisher, "sw..bad", "x"], environment: environment)
        XCTAssertEqual(rejected.status, 1)
        XCTAssertTrue(rejected.output.contains("publish failed: 400"), "\(rejected)")

        // Reconnect: the node stops (end record) and comes back on the same port.
        let port = server.port
        let follower = try ScriptProcess([subscriber, "--count", "2", "rc.*"], environment: environment)
        defer { follower.stop() }
        try await follower.waitForOutput(containing: " of rc.*: ")
        _ = try await runTool([publisher, "rc.a", "before"], environment: environment)
        try await follower.waitForOutput(containing: " rc.a before")
        server.terminate()
        try await follower.waitForOutput(containing: "# end: ")
        server = try await startTestServer(port: port)
        try await follower.waitForOutput(containing: "# reconnected, resuming after ", timeout: .seconds(20))
        _ = try await runTool([publisher, "rc.a", "after"], environment: environment)
        let followed = try await follower.waitForExit()
        XCTAssertEqual(followed.status, 0, "\(followed)")
        XCTAssertTrue(followed.output.contains(" rc.a after\n"), "\(followed)")
    }

    // MARK: Browser (EventSource)

    func test_browser_examplePage_showsAPublishedMessage_inHeadlessChromium() async throws {
        try await requirePythonModules(["selenium"], install: "pip install selenium")
        _ = try requireTool("chromium", install: "apt-get install chromium")
        _ = try requireTool("chromedriver", install: "apt-get install chromium-driver")
        let screenshot = Repo.path(".build/artifacts/browser-example.png")
        let run = try await runTool(
            [
                "python3", Repo.path("Tests/browser/browser_check.py"), "example", "--node", url,
                "--page", Repo.path("examples/browser/index.html"), "--screenshot", screenshot,
            ], timeout: .seconds(120))
        if run.status == 3 { throw XCTSkip(run.output) }
        XCTAssertEqual(run.status, 0, "\(run)")
        XCTAssertTrue(run.output.contains("example ok"), "\(run)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot), "screenshot at \(screenshot)")
    }
}
