import Foundation
import JWTKit
import PiglixTopics

/// Why a request is not authorized: 401 (no usable token) or 403 (a valid
/// token without the grant), each with a message for problem+json.
public enum AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingToken
    case invalidToken(String)
    case forbidden(String)

    public var status: Int {
        switch self {
        case .missingToken, .invalidToken: 401
        case .forbidden: 403
        }
    }

    public var description: String {
        switch self {
        case .missingToken:
            "a bearer token is required: Authorization: Bearer TOKEN, the piglixAuthorization cookie, or the authorization query parameter"
        case .invalidToken(let why): "the bearer token is not valid: \(why)"
        case .forbidden(let why): why
        }
    }
}

/// Why the key material cannot be used (start-up errors).
public struct KeyFileError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Verifies bearer tokens against the node's keys (`--jwt-key-file`,
/// `--jwks-file`) and turns their claims into an `Access`. The key
/// collection is an actor; a verification is one hop per request, never
/// per message.
public final class Authorizer: Sendable {
    let keys: JWTKeyCollection
    let limits: TopicLimits
    /// What the keys are, for the start-up log.
    public let summary: String

    init(keys: JWTKeyCollection, limits: TopicLimits, summary: String) {
        self.keys = keys
        self.limits = limits
        self.summary = summary
    }

    /// Loads the verification keys. A key file holds an HS256 secret (its
    /// bytes, at least 32, a trailing newline ignored), or a PEM public key:
    /// EC P-256 (ES256) or RSA (RS256). A JWKS file holds a JSON Web Key Set.
    /// Both may be given.
    public static func load(keyFile: String?, jwksFile: String?, limits: TopicLimits = .default) async throws(KeyFileError) -> Authorizer? {
        guard keyFile != nil || jwksFile != nil else { return nil }
        let keys = JWTKeyCollection()
        var kinds: [String] = []
        if let keyFile {
            let text = try read(keyFile, what: "--jwt-key-file")
            kinds.append(try await add(keyFileContents: text, path: keyFile, to: keys))
        }
        if let jwksFile {
            let text = try read(jwksFile, what: "--jwks-file")
            do { try await keys.add(jwksJSON: text) } catch {
                throw KeyFileError(description: "--jwks-file \(jwksFile) is not a usable JSON Web Key Set: \(error)")
            }
            kinds.append("JWKS \(jwksFile)")
        }
        return Authorizer(keys: keys, limits: limits, summary: kinds.joined(separator: ", "))
    }

    private static func read(_ path: String, what: String) throws(KeyFileError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyFileError(description: "\(what) \(path) cannot be read")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Adds one key file's key (verification side); returns its kind.
    static func add(keyFileContents text: String, path: String, to keys: JWTKeyCollection) async throws(KeyFileError) -> String {
        if text.contains("-----BEGIN") {
            if text.contains("PRIVATE KEY") {
                throw KeyFileError(description: "--jwt-key-file \(path) holds a private key: give the node the public key (the private key signs tokens: piglix token)")
            }
            if let key = try? ES256PublicKey(pem: text) {
                await keys.add(ecdsa: key)
                return "ES256 public key \(path)"
            }
            if let key = try? Insecure.RSA.PublicKey(pem: text) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
                return "RS256 public key \(path)"
            }
            throw KeyFileError(description: "--jwt-key-file \(path) is PEM but neither an EC P-256 nor an RSA public key")
        }
        let secret = secretBytes(text)
        guard secret.count >= 32 else {
            throw KeyFileError(description: "--jwt-key-file \(path) holds an HS256 secret of \(secret.count) bytes; use at least 32 random bytes (openssl rand -base64 48)")
        }
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return "HS256 secret \(path)"
    }

    /// A secret file's bytes without the trailing newline editors add.
    static func secretBytes(_ text: String) -> [UInt8] {
        var bytes = Array(text.utf8)
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        return bytes
    }

    /// Verifies `token` (signature, `exp`, `nbf`) and parses its grants.
    public func access(token: String) async throws(AuthError) -> Access {
        let claims: AccessClaims
        do { claims = try await keys.verify(token, as: AccessClaims.self) } catch let error as JWTError {
            throw .invalidToken(error.reason ?? "\(error.errorType)")
        } catch {
            throw .invalidToken("\(error)")
        }
        return try access(claims)
    }

    func access(_ claims: AccessClaims) throws(AuthError) -> Access {
        func patterns(_ names: [String]?, _ what: String) throws(AuthError) -> [TopicPattern] {
            var out: [TopicPattern] = []
            for name in names ?? [] {
                do { out.append(try TopicPattern(name, limits: limits)) } catch {
                    throw .invalidToken("its piglix.\(what) pattern \(name) is not valid: \(error)")
                }
            }
            return out
        }
        return Access(
            publish: try patterns(claims.piglix.publish, "publish"), subscribe: try patterns(claims.piglix.subscribe, "subscribe"),
            locks: try patterns(claims.piglix.locks, "locks"), expiresAt: claims.exp.map { $0.value.timeIntervalSince1970 })
    }
}
