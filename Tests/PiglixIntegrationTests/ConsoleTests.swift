import Foundation
import PiglixTestKit
import XCTest

/// The web console at `/`: how it is served, and in a real browser.
final class ConsoleTests: XCTestCase {
    private var server: TestServer!
    private var url: String { server.base }

    override func setUp() async throws {
        server = try await startTestServer()
    }

    /// `curl -sS -D - …`: the status line, headers (lower-cased names) and body.
    private func fetch(_ path: String, _ extra: [String] = []) async throws -> (status: Int, headers: [String: String], body: String) {
        _ = try requireTool("curl", install: "apt-get install curl")
        let run = try await runTool(["curl", "-sS", "-D", "-"] + extra + ["\(url)\(path)"])
        XCTAssertEqual(run.status, 0, "\(run)")
        let parts = run.output.components(separatedBy: "\r\n\r\n")
        let head = parts[0].components(separatedBy: "\r\n")
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    func test_console_page_isHTML_revalidated_andNamesVersionedAssets() async throws {
        let page = try await fetch("/")
        XCTAssertEqual(page.status, 200)
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertEqual(page.headers["cache-control"], "no-cache")
        XCTAssertEqual(page.headers["x-content-type-options"], "nosniff")
        XCTAssertTrue(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        XCTAssertNotNil(page.headers["etag"])
        XCTAssertTrue(page.body.contains("<title>Piglix console</title>"))
        // No CDN, no external resource: everything comes from the node.
        XCTAssertFalse(page.body.contains("http://") || page.body.contains("https://"), page.body)

        let script = try XCTUnwrap(page.body.firstMatch(of: /src="(\/console\/console\.js\?v=[0-9a-f]{16})"/)?.1)
        let style = try XCTUnwrap(page.body.firstMatch(of: /href="(\/console\/console\.css\?v=[0-9a-f]{16})"/)?.1)
        for (path, type) in [(String(script), "text/javascript; charset=utf-8"), (String(style), "text/css; charset=utf-8")] {
            let asset = try await fetch(path)
            XCTAssertEqual(asset.status, 200, path)
            XCTAssertEqual(asset.headers["content-type"], type, path)
            XCTAssertEqual(asset.headers["cache-control"], "public, max-age=31536000, immutable", path)
            XCTAssertFalse(asset.body.contains("http://") || asset.body.contains("https://"), "\(path) loads nothing external")
            // Without the current version it must be revalidated.
            let unversioned = try await fetch(String(path.prefix { $0 != "?" }))
            XCTAssertEqual(unversioned.headers["cache-control"], "no-cache", path)
            XCTAssertEqual(unversioned.body, asset.body)
        }
    }

    func test_console_ifNoneMatch_answers304_andHEADHasNoBody() async throws {
        let page = try await fetch("/")
        let etag = try XCTUnwrap(page.headers["etag"])
        let cached = try await fetch("/", ["-H", "If-None-Match: \(etag)"])
        XCTAssertEqual(cached.status, 304)
        XCTAssertEqual(cached.body, "")
        let head = try await fetch("/", ["-I", "-o", "/dev/null"])
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertEqual(head.body, "")
    }

    func test_console_inHeadlessChromium_showsClusterAndAPublishedMessage_andSavesAScreenshot() async throws {
        try await requirePythonModules(["selenium"], install: "pip install selenium")
        _ = try requireTool("chromium", install: "apt-get install chromium")
        _ = try requireTool("chromedriver", install: "apt-get install chromium-driver")
        let screenshot = Repo.path(".build/artifacts/console.png")
        try? FileManager.default.removeItem(atPath: screenshot)
        let run = try await runTool(
            ["python3", Repo.path("Tests/browser/browser_check.py"), "console", "--node", url, "--screenshot", screenshot],
            timeout: .seconds(120))
        if run.status == 3 { throw XCTSkip(run.output) }
        XCTAssertEqual(run.status, 0, "\(run)")
        XCTAssertTrue(run.output.contains("console ok"), "\(run)")
        let size = (try? FileManager.default.attributesOfItem(atPath: screenshot)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size, 1000, "a screenshot at \(screenshot)")
    }
}
