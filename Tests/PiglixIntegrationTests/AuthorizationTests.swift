import Foundation
import PiglixTestKit
import XCTest

/// A node started with `--jwt-key-file`, tokens made by `piglix token`, and
/// curl as the client (docs/protocol.md, "Authorization").
final class AuthorizationTests: XCTestCase {
    private var keyFile = ""

    override func setUp() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-jwt-\(UUID().uuidString)")
        try Data((0..<48).map { _ in UInt8.random(in: 33...126) }).write(to: url)
        keyFile = url.path
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    }

    private func startSecured() async throws -> TestServer {
        let server = try TestServer()
        addTeardownBlock { server.kill() }
        try await server.start(extraArguments: ["--jwt-key-file", keyFile])
        return server
    }

    /// `piglix token ARGUMENTS` with this test's key.
    private func token(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: PiglixProcess.binaryPath)
        process.arguments = ["token", "--key-file", keyFile] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testRequestsWithoutAValidTokenAre401ProblemsAndProbesStayOpen() async throws {
        let server = try await startSecured()
        for arguments in [
            ["\(server.base)/v1/subscribe?topic=a.*"], ["-d", "x", "\(server.base)/v1/topics/a.b"], ["\(server.base)/metrics"],
            ["\(server.base)/v1/groups"], ["-H", "Authorization: Bearer not.a.token", "\(server.base)/v1/groups"],
        ] {
            for http in [["--http2-prior-knowledge"], ["--http1.1"]] {
                let reply = Curl.request(http + ["-i"] + arguments)
                XCTAssertEqual(reply.httpCode, 401, "\(arguments): \(reply.text)")
                XCTAssertTrue(reply.text.lowercased().contains("www-authenticate: bearer"), reply.text)
                XCTAssertTrue(reply.text.contains("application/problem+json"), reply.text)
            }
        }
        XCTAssertEqual(Curl.request(["--http2-prior-knowledge", "\(server.base)/healthz"]).httpCode, 200)
        XCTAssertEqual(Curl.request(["--http2-prior-knowledge", "\(server.base)/readyz"]).httpCode, 200)
    }

    /// The `locks` claim (`piglix token --lock`): a lock name matched as a
    /// topic; publish and subscribe grants give no lock; `/v1/locks` needs a token.
    func testLocksClaimGrantsLockNames() async throws {
        let server = try await startSecured()
        let locks = try token(["--lock", "jobs.*"])
        let others = try token(["--publish", ">", "--subscribe", ">"])
        let granted = try CurlStream(["--http2-prior-knowledge", "-X", "POST", "-H", "Authorization: Bearer \(locks)", "\(server.base)/v1/locks/jobs.nightly"])
        try await granted.waitForText("\"granted\"")
        granted.stop()
        let elsewhere = Curl.request(["-X", "POST", "-H", "Authorization: Bearer \(locks)", "\(server.base)/v1/locks/other"])
        XCTAssertEqual(elsewhere.httpCode, 403, elsewhere.body)
        XCTAssertTrue(elsewhere.body.contains("does not grant lock other"), elsewhere.body)
        XCTAssertEqual(Curl.request(["-X", "POST", "-H", "Authorization: Bearer \(others)", "\(server.base)/v1/locks/jobs.nightly"]).httpCode, 403)
        XCTAssertEqual(Curl.request(["-X", "DELETE", "-H", "Authorization: Bearer \(others)", "\(server.base)/v1/locks/jobs.x?token=1"]).httpCode, 403)
        XCTAssertEqual(Curl.request(["\(server.base)/v1/locks"]).httpCode, 401)
        XCTAssertEqual(Curl.request(["-H", "Authorization: Bearer \(others)", "\(server.base)/v1/locks"]).httpCode, 200)
    }

    func testGrantsArePerTopicForPublishAndPerPatternForSubscribe() async throws {
        let server = try await startSecured()
        let token = try token(["--publish", "a.>", "--subscribe", "a.*"])
        let bearer = ["-H", "Authorization: Bearer \(token)"]

        let allowed = Curl.request(["--http2-prior-knowledge"] + bearer + ["-d", "yes", "\(server.base)/v1/topics/a.b"])
        XCTAssertEqual(allowed.httpCode, 202, allowed.text)
        let forbidden = Curl.request(["--http2-prior-knowledge"] + bearer + ["-d", "no", "\(server.base)/v1/topics/b.c"])
        XCTAssertEqual(forbidden.httpCode, 403)
        XCTAssertTrue(forbidden.body.contains("publish on b.c"), forbidden.body)
        // $piglix.* stays read-only, whatever the token says.
        let everything = try self.token(["--publish", ">", "--subscribe", ">"])
        let reserved = Curl.request(["--http2-prior-knowledge", "-H", "Authorization: Bearer \(everything)", "-d", "x", "\(server.base)/v1/topics/$piglix.x"])
        XCTAssertEqual(reserved.httpCode, 400, reserved.body)

        // A batch: the forbidden record alone gets a 403 ack.
        let batch = Curl.request(
            ["--http2-prior-knowledge"] + bearer + [
                "--data-binary", "{\"topic\":\"a.x\",\"data\":\"1\"}\n{\"topic\":\"z.x\",\"data\":\"2\"}\n{\"topic\":\"a.y\",\"data\":\"3\"}\n",
                "\(server.base)/v1/publish",
            ])
        let acks = ndjsonObjects(batch.body)
        XCTAssertEqual(acks.map { $0["ok"] as? Bool }, [true, false, true], batch.body)
        XCTAssertEqual(acks.count == 3 ? acks[1]["status"] as? Int : nil, 403, batch.body)

        let refused = Curl.request(["--http2-prior-knowledge"] + bearer + ["\(server.base)/v1/subscribe?topic=a.*&topic=a.>"])
        XCTAssertEqual(refused.httpCode, 403)
        XCTAssertTrue(refused.body.contains("subscribe on a.>"), refused.body)

        // The token in the query (EventSource) or a cookie works as well as the header.
        let viaQuery = try CurlStream(http2: "\(server.base)/v1/subscribe?topic=a.*&authorization=\(token)")
        let viaCookie = try CurlStream(["--http1.1", "-b", "piglixAuthorization=\(token)", "\(server.base)/v1/subscribe?topic=a.*"])
        try await viaQuery.waitUntilLive()
        try await viaCookie.waitUntilLive()
        XCTAssertEqual(Curl.request(["--http2-prior-knowledge"] + bearer + ["-d", "live", "\(server.base)/v1/topics/a.q"]).httpCode, 202)
        try await viaQuery.waitFor("the message") { $0.payloads.contains("live") }
        try await viaCookie.waitFor("the message") { $0.payloads.contains("live") }
    }

    func testStreamEndsWithAnEndRecordWhenItsTokenExpires() async throws {
        let server = try await startSecured()
        let token = try token(["--subscribe", "t.>", "--ttl", "2s"])
        let stream = try CurlStream(http2: "\(server.base)/v1/subscribe?topic=t.>", headers: ["Authorization: Bearer \(token)"])
        try await stream.waitUntilLive()
        try await stream.waitFor("the end record", timeout: .seconds(10)) { s in
            s.records.contains { $0["type"] as? String == "end" && ($0["reason"] as? String ?? "").contains("token expired") }
        }
        try await stream.waitForExit()
    }

    func testOpenNodeSaysAtStartUpThatAnyoneMayPublish() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-open-\(UUID().uuidString).log")
        addTeardownBlock { try? FileManager.default.removeItem(at: log) }
        let port = try freePort()
        let process = try PiglixProcess(["serve", "--listen", "127.0.0.1:\(port)"], log: log)
        addTeardownBlock { process.kill() }
        try await poll("the start-up warning", timeout: .seconds(20)) {
            ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("anyone who reaches")
        }
    }
}
