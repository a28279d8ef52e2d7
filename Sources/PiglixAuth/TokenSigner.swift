import Foundation
import JWTKit

/// Signs tokens for `piglix token`: with an HS256 secret file, or a PEM
/// private key (EC P-256: ES256; RSA: RS256).
public enum TokenSigner {
    public static func sign(keyFile path: String, claims: AccessClaims) async throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyFileError(description: "--key-file \(path) cannot be read")
        }
        let text = String(decoding: data, as: UTF8.self)
        let keys = JWTKeyCollection()
        if text.contains("-----BEGIN") {
            if let key = try? ES256PrivateKey(pem: text) {
                await keys.add(ecdsa: key)
            } else if let key = try? Insecure.RSA.PrivateKey(pem: text) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
            } else {
                throw KeyFileError(description: "--key-file \(path) is PEM but neither an EC P-256 nor an RSA private key")
            }
        } else {
            let secret = Authorizer.secretBytes(text)
            guard secret.count >= 32 else {
                throw KeyFileError(description: "--key-file \(path) holds an HS256 secret of \(secret.count) bytes; use at least 32")
            }
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        return try await keys.sign(claims)
    }
}
