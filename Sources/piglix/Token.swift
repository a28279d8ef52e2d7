import ArgumentParser
import Foundation
import JWTKit
import PiglixAuth
import PiglixTopics

/// `piglix token`: prints a bearer token for tests, examples and scripts.
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a bearer token (JWT) granting publish, subscribe and lock patterns.",
        discussion: """
            The key file is the node's HS256 secret (the same file as its --jwt-key-file), or a PEM private key \
            (EC P-256: ES256; RSA: RS256) whose public key the node holds. Example: \
            piglix token --key-file secret --publish 'orders.>' --subscribe '>' --ttl 1h
            """)

    @Option(help: "The signing key: an HS256 secret file, or a PEM private key.")
    var keyFile: String
    @Option(help: "A pattern the bearer may publish on (repeatable).")
    var publish: [String] = []
    @Option(help: "A pattern the bearer may subscribe to (repeatable).")
    var subscribe: [String] = []
    @Option(help: "A pattern of lock names the bearer may request and release (repeatable).")
    var lock: [String] = []
    @Option(help: "How long the token is valid: seconds, or a number with s, m, h or d; 0 for no expiry.")
    var ttl: String = "1h"
    @Option(help: "The token's subject (sub claim), for logs.")
    var subject: String?

    func validate() throws {
        if publish.isEmpty && subscribe.isEmpty && lock.isEmpty { throw ValidationError("give at least one --publish, --subscribe or --lock pattern") }
        for pattern in publish + subscribe + lock {
            do { _ = try TopicPattern(pattern) } catch { throw ValidationError("pattern \(pattern) is not valid: \(error)") }
        }
        _ = try Self.seconds(ttl)
    }

    /// `90`, `90s`, `15m`, `1h`, `7d`.
    static func seconds(_ text: String) throws -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var number = Substring(text)
        var unit = 1.0
        if let last = number.last, let factor = units[last] {
            unit = factor
            number = number.dropLast()
        }
        guard let value = Double(number), value >= 0 else { throw ValidationError("--ttl \(text) is not a duration like 90s, 15m, 1h or 7d") }
        return value * unit
    }

    func run() async throws {
        let seconds = try Self.seconds(ttl)
        let claims = AccessClaims(
            piglix: .init(publish: publish.isEmpty ? nil : publish, subscribe: subscribe.isEmpty ? nil : subscribe, locks: lock.isEmpty ? nil : lock),
            exp: seconds > 0 ? ExpirationClaim(value: Date().addingTimeInterval(seconds)) : nil,
            sub: subject.map { SubjectClaim(value: $0) })
        do { print(try await TokenSigner.sign(keyFile: keyFile, claims: claims)) } catch let error as KeyFileError {
            throw ValidationError(error.description)
        }
    }
}
