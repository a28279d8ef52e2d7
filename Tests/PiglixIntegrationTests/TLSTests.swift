import Foundation
import PiglixTestKit
import XCTest

/// `--tls-cert` / `--tls-key`: TLS with ALPN h2 and http/1.1 on one port,
/// tried with curl, Python httpx and headless Chromium on a self-signed
/// certificate, and reloaded on SIGHUP.
final class TLSTests: XCTestCase {
    private var directory: URL!

    override func setUp() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { [directory] in try? FileManager.default.removeItem(at: directory!) }
    }

    /// A self-signed certificate for 127.0.0.1 and localhost, named `name`.
    private func makeCertificate(_ name: String) throws -> (cert: String, key: String) {
        let cert = directory.appendingPathComponent("\(name).pem").path
        let key = directory.appendingPathComponent("\(name).key").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=\(name)", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert,
        ]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "openssl req")
        return (cert, key)
    }

    private func start(cert: String, key: String) async throws -> (PiglixProcess, String) {
        let port = try freePort()
        let node = try PiglixProcess(["serve", "--listen", "127.0.0.1:\(port)", "--tls-cert", cert, "--tls-key", key, "--log-level", "info"])
        addTeardownBlock { node.kill() }
        let base = "https://127.0.0.1:\(port)"
        try await poll("the TLS listener", timeout: .seconds(20)) {
            Curl.request(["--cacert", cert, "\(base)/healthz"]).httpCode == 200
        }
        return (node, base)
    }

    func testCurlNegotiatesH2AndHTTP1OverTLSOnOnePortAndStreams() async throws {
        let (cert, key) = try makeCertificate("piglix-test")
        let (_, base) = try await start(cert: cert, key: key)
        let h2 = try Curl.run(["--cacert", cert, "--http2", "-o", "/dev/null", "-w", "%{http_version}", "\(base)/healthz"])
        XCTAssertEqual(h2.text, "2")
        let h1 = try Curl.run(["--cacert", cert, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", "\(base)/healthz"])
        XCTAssertEqual(h1.text, "1.1")
        // Cleartext on the TLS port gets no answer.
        XCTAssertNotEqual(Curl.request(["--http2-prior-knowledge", base.replacingOccurrences(of: "https", with: "http") + "/healthz"]).httpCode, 200)

        let subscriber = try CurlStream(["--cacert", cert, "--http2", "\(base)/v1/subscribe?topic=tls.*"])
        try await subscriber.waitUntilLive()
        let published = Curl.request(["--cacert", cert, "--http2", "-d", "secret", "\(base)/v1/topics/tls.a"])
        XCTAssertEqual(published.httpCode, 202, published.text)
        try await subscriber.waitFor("the message over TLS") { $0.payloads == ["secret"] }
    }

    func testNghttpNegotiatesH2OverTLS() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nghttp") else { throw XCTSkip("no /usr/bin/nghttp (nghttp2-client)") }
        let (cert, key) = try makeCertificate("piglix-test")
        let (_, base) = try await start(cert: cert, key: key)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nghttp")
        process.arguments = ["-v", "-d", "-", "\(base)/v1/topics/nghttp.a"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        try? input.fileHandleForWriting.write(contentsOf: Data("over h2".utf8))
        try input.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertTrue(text.contains("negotiated protocol: h2"), String(text.prefix(2000)))
        XCTAssertTrue(text.contains(":status: 202"), String(text.prefix(2000)))
    }

    func testPythonHttpxSpeaksHTTP2OverTLS() async throws {
        let (cert, key) = try makeCertificate("piglix-test")
        let (_, base) = try await start(cert: cert, key: key)
        let script = """
            import httpx, sys
            with httpx.Client(http2=True, verify=sys.argv[1]) as c:
                r = c.post(sys.argv[2] + "/v1/topics/py.a", content=b"hello")
                print(r.http_version, r.status_code)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, cert, base]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw XCTSkip("python3 with httpx[http2] is not installed here") }
        XCTAssertEqual(text.trimmingCharacters(in: .whitespacesAndNewlines), "HTTP/2 202")
    }

    func testHeadlessChromiumLoadsTheConsoleOverTLS() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else { throw XCTSkip("no /usr/bin/chromium") }
        let (cert, key) = try makeCertificate("piglix-test")
        let (_, base) = try await start(cert: cert, key: key)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/chromium")
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors", "--user-data-dir=\(directory.path)/chromium",
            "--dump-dom", "\(base)/",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let dom = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertTrue(dom.contains("Piglix"), String(dom.prefix(500)))
    }

    /// A renewed certificate is taken on SIGHUP, without a restart: new
    /// connections get it; a bad file keeps the old one.
    func testSIGHUPReloadsTheCertificate() async throws {
        let first = try makeCertificate("first")
        let second = try makeCertificate("second")
        let (node, base) = try await start(cert: first.cert, key: first.key)
        XCTAssertEqual(Curl.request(["--cacert", first.cert, "\(base)/healthz"]).httpCode, 200)
        let firstCopy = directory.appendingPathComponent("first-copy.pem").path
        try FileManager.default.copyItem(atPath: first.cert, toPath: firstCopy)
        // Replace the files in place, then SIGHUP.
        try FileManager.default.removeItem(atPath: first.cert)
        try FileManager.default.removeItem(atPath: first.key)
        try FileManager.default.copyItem(atPath: second.cert, toPath: first.cert)
        try FileManager.default.copyItem(atPath: second.key, toPath: first.key)
        kill(node.processIdentifier, SIGHUP)
        try await poll("the new certificate", timeout: .seconds(10)) {
            Curl.request(["--cacert", second.cert, "\(base)/healthz"]).httpCode == 200
        }
        XCTAssertNotEqual(Curl.request(["--cacert", firstCopy, "\(base)/healthz"]).httpCode, 200, "the old certificate is gone")
        // A broken file: the node keeps serving with the certificate it has.
        try Data("not a certificate".utf8).write(to: URL(fileURLWithPath: first.cert))
        kill(node.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(Curl.request(["--cacert", second.cert, "\(base)/healthz"]).httpCode, 200)
        XCTAssertTrue(node.isRunning)
    }

    func testMissingKeyAndUnreadableCertificateAreClearStartUpErrors() async throws {
        let (cert, _) = try makeCertificate("piglix-test")
        for (arguments, needle) in [
            (["--tls-cert", cert], "--tls-cert needs --tls-key"),
            (["--tls-cert", "/nonexistent.pem", "--tls-key", cert], "--tls-cert /nonexistent.pem"),
        ] {
            let log = directory.appendingPathComponent("err-\(UUID().uuidString).log")
            let node = try PiglixProcess(["serve", "--listen", "127.0.0.1:\(try freePort())"] + arguments, log: log)
            try await poll("exit", timeout: .seconds(20)) { !node.isRunning }
            XCTAssertNotEqual(node.terminationStatus, 0)
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            XCTAssertTrue(text.contains(needle), text)
        }
    }
}
