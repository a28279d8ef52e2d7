import Foundation
import JWTKit
import PiglixAuth
import PiglixTopics
import XCTest

final class AuthorizerTests: XCTestCase {
    let secret = String(repeating: "k", count: 40)

    private func file(_ contents: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-auth-\(UUID().uuidString)")
        try contents.write(to: url, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private func pattern(_ name: String) -> TopicPattern { try! TopicPattern(name) }

    /// A grant covers a requested pattern only when every topic the request
    /// matches, the grant matches too.
    func testGrantCoversOnlyPatternsWhoseTopicsItAllMatches() {
        let cases: [(String, String, Bool)] = [
            (">", "a.b", true), (">", "a.>", true), ("a.>", "a.b.c", true), ("a.>", "a.*", true), ("a.>", "a", false),
            ("a.*", "a.b", true), ("a.*", "a.*", true), ("a.*", "a.>", false), ("a.*", "a.b.c", false), ("a.b", "a.*", false),
            ("*.x", "a.x", true), ("*.x", "*.y", false), ("a.b", "a.b", true),
        ]
        for (grant, request, expected) in cases {
            XCTAssertEqual(pattern(grant).covers(pattern(request)), expected, "\(grant) covers \(request)")
        }
    }

    /// The `locks` claim: a lock name matched as a topic; a name that is not
    /// a topic only by `>`; no claim, no lock (docs/protocol.md, "Authorization").
    func testLocksClaimGrantsLockNamesMatchedAsTopics() async throws {
        let keyFile = try file(secret + "\n")
        let loaded = try await Authorizer.load(keyFile: keyFile, jwksFile: nil)
        let authorizer = try XCTUnwrap(loaded)
        let token = try await TokenSigner.sign(
            keyFile: keyFile, claims: AccessClaims(piglix: .init(publish: nil, subscribe: nil, locks: ["jobs.*"])))
        let access = try await authorizer.access(token: token)
        XCTAssertTrue(access.mayLock("jobs.nightly"))
        XCTAssertFalse(access.mayLock("jobs.nightly.extra"))
        XCTAssertFalse(access.mayLock("other"))
        XCTAssertFalse(access.mayLock("jobs..x"), "not a topic: only > grants it")
        XCTAssertTrue(Access(publish: [], subscribe: [], locks: [pattern(">")]).mayLock("jobs..x"))
        XCTAssertFalse(Access(publish: [pattern(">")], subscribe: [pattern(">")]).mayLock("a"), "publish and subscribe grant no lock")
    }

    /// Signed with the node's HS256 secret: verified, its grants parsed; a
    /// token signed with another secret, an expired one and garbage are 401s.
    func testHS256TokenIsVerifiedAndOthersAreRefused() async throws {
        let keyFile = try file(secret + "\n")
        let loaded = try await Authorizer.load(keyFile: keyFile, jwksFile: nil)
        let authorizer = try XCTUnwrap(loaded)
        let claims = AccessClaims(
            piglix: .init(publish: ["orders.>"], subscribe: [">"]), exp: ExpirationClaim(value: Date().addingTimeInterval(60)))
        let token = try await TokenSigner.sign(keyFile: keyFile, claims: claims)
        let access = try await authorizer.access(token: token)
        XCTAssertTrue(access.mayPublish(try Topic("orders.eu")))
        XCTAssertFalse(access.mayPublish(try Topic("billing.eu")))
        XCTAssertTrue(access.maySubscribe(pattern("billing.*")))
        XCTAssertEqual(access.secondsUntilExpiry ?? 0, 60, accuracy: 5)

        let other = try await TokenSigner.sign(keyFile: try file(String(repeating: "z", count: 40)), claims: claims)
        for bad in [
            other, "garbage",
            try await TokenSigner.sign(
                keyFile: keyFile, claims: AccessClaims(piglix: claims.piglix, exp: ExpirationClaim(value: Date().addingTimeInterval(-10)))),
        ] {
            do {
                _ = try await authorizer.access(token: bad)
                XCTFail("accepted \(bad)")
            } catch {
                XCTAssertEqual(error.status, 401)
            }
        }
    }

    /// ES256: the node holds the public key, `piglix token` signs with the
    /// private one. The node refuses a private key as its verification key.
    func testES256TokenSignedWithThePrivateKeyVerifiesWithThePublicKey() async throws {
        let privateKey = ES256PrivateKey()
        let privateFile = try file(privateKey.pemRepresentation)
        let publicFile = try file(privateKey.publicKey.pemRepresentation)
        let loaded = try await Authorizer.load(keyFile: publicFile, jwksFile: nil)
        let authorizer = try XCTUnwrap(loaded)
        XCTAssertTrue(authorizer.summary.contains("ES256"))
        let token = try await TokenSigner.sign(keyFile: privateFile, claims: AccessClaims(piglix: .init(publish: nil, subscribe: ["a.*"])))
        let access = try await authorizer.access(token: token)
        XCTAssertTrue(access.maySubscribe(pattern("a.b")))
        XCTAssertFalse(access.maySubscribe(pattern("a.>")))
        XCTAssertNil(access.expiresAt)
        do {
            _ = try await Authorizer.load(keyFile: privateFile, jwksFile: nil)
            XCTFail("a private key was taken as the node's key")
        } catch {
            XCTAssertTrue(error.description.contains("private key"), error.description)
        }
    }

    /// Key files that cannot work are refused at start-up, naming the file.
    func testUnusableKeyFilesAreRefusedWithTheirPath() async throws {
        let short = try file("short")
        let garbagePEM = try file("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        for (path, needle) in [(short, "at least 32"), (garbagePEM, "neither"), ("/nonexistent/key", "cannot be read")] {
            do {
                _ = try await Authorizer.load(keyFile: path, jwksFile: nil)
                XCTFail("\(path) was accepted")
            } catch {
                XCTAssertTrue(error.description.contains(needle) && error.description.contains(path), error.description)
            }
        }
        let noKeys = try await Authorizer.load(keyFile: nil, jwksFile: nil)
        XCTAssertNil(noKeys, "no key: the node runs open")
    }
}
