import Foundation
import PiglixTestKit
import XCTest

/// docs/openapi.yaml is the node's contract: served as it is, and naming
/// every route the router registers (and no other).
final class OpenAPIDocumentTests: XCTestCase {
    private var document: String {
        get throws { try Repo.read("docs/openapi.yaml") }
    }

    func testServedDocumentIsDocsOpenAPIYAMLByteForByte() async throws {
        let live = try await LiveServer.start()
        let result = try Curl.run(["-D", "-", "\(live.base)/openapi.yaml"])
        await live.stop()
        let text = result.text
        guard let split = text.range(of: "\r\n\r\n") else { return XCTFail("no answer: \(text)") }
        let head = text[..<split.lowerBound].lowercased()
        let body = String(text[split.upperBound...])
        XCTAssertTrue(head.hasPrefix("http/1.1 200"), head)
        XCTAssertTrue(head.contains("content-type: application/yaml"), head)
        let expected = try document
        // Not XCTAssertEqual on 30 KB strings: say where they part.
        if body != expected {
            let common = zip(body, expected).prefix { $0 == $1 }.count
            XCTFail(
                "GET /openapi.yaml differs from docs/openapi.yaml at character \(common) "
                    + "(\(body.count) vs \(expected.count) characters): run scripts/gen-openapi-swift.sh")
        }
        XCTAssertTrue(body.hasPrefix("openapi: 3.0.3\n"))
    }

    func testGeneratedSwiftIsUpToDate() async throws {
        let check = try await runTool([Repo.path("scripts/gen-openapi-swift.sh"), "--check"], timeout: .seconds(60))
        XCTAssertEqual(check.status, 0, check.description)
    }

    /// Paths and their methods, read crudely: a path is a line `  /…:` under
    /// `paths:`, a method a line `    get:` (and so on) below it.
    private func documentedOperations() throws -> Set<String> {
        var operations = Set<String>()
        var inPaths = false
        var path: String?
        for line in try document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" {
                inPaths = true
                continue
            }
            guard inPaths else { continue }
            if let first = line.first, first != " ", first != "#" { break }  // the next top-level key
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let key = line.trimmingCharacters(in: .whitespaces).dropLast()
                if ["get", "head", "post", "put", "patch", "delete", "options"].contains(key) {
                    operations.insert("\(key.uppercased()) \(path)")
                }
            }
        }
        return operations
    }

    /// `router.get("/v1/topics/:topic", …)` in PiglixServer.swift, and the
    /// console's assets (GET and HEAD each, ConsoleRoutes), as `GET /v1/topics/{topic}`.
    private func registeredRoutes() throws -> Set<String> {
        var routes = Set<String>()
        let server = try Repo.read("Sources/PiglixHTTP/PiglixServer.swift")
        let route = try NSRegularExpression(pattern: #"router\.(get|head|post|put|patch|delete|options)\("([^"]+)""#)
        for match in route.matches(in: server, range: NSRange(server.startIndex..., in: server)) {
            let method = (server as NSString).substring(with: match.range(at: 1)).uppercased()
            let path = (server as NSString).substring(with: match.range(at: 2))
                .split(separator: "/", omittingEmptySubsequences: false)
                .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
                .joined(separator: "/")
            routes.insert("\(method) \(path)")
        }
        XCTAssertTrue(server.contains("ConsoleRoutes.add(to: router)"))
        let assets = try Repo.read("Sources/PiglixHTTP/Console/ConsoleAssets.swift")
        let assetPath = try NSRegularExpression(pattern: #"path: "([^"]+)""#)
        for match in assetPath.matches(in: assets, range: NSRange(assets.startIndex..., in: assets)) {
            let path = (assets as NSString).substring(with: match.range(at: 1))
            routes.insert("GET \(path)")
            routes.insert("HEAD \(path)")
        }
        return routes
    }

    func testEveryRegisteredRouteIsDocumentedAndNothingElse() throws {
        let routes = try registeredRoutes()
        // Guard the crude parsers: they found what we know is there.
        XCTAssertTrue(routes.isSuperset(of: ["POST /v1/topics/{topic}", "GET /v1/subscribe", "GET /openapi.yaml", "HEAD /"]), "\(routes.sorted())")
        XCTAssertGreaterThanOrEqual(routes.count, 15)
        // CORS preflights are the middleware's, answered on every path.
        let documented = try documentedOperations().filter { !$0.hasPrefix("OPTIONS ") }
        XCTAssertEqual(
            routes.subtracting(documented).sorted(), [], "registered in PiglixServer.swift but not in docs/openapi.yaml")
        XCTAssertEqual(
            documented.subtracting(routes).sorted(), [], "in docs/openapi.yaml but not registered in PiglixServer.swift")
    }
}
