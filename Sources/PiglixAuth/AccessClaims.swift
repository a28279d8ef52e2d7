import JWTKit

/// A Piglix token's claims: the grants, and the registered time claims.
///
/// ```json
/// {"piglix": {"publish": ["orders.>"], "subscribe": [">"], "locks": ["jobs.>"]}, "exp": 1767225600}
/// ```
public struct AccessClaims: JWTPayload, Equatable {
    public struct Grants: Codable, Sendable, Equatable {
        public var publish: [String]?
        public var subscribe: [String]?
        /// Patterns of lock names the bearer may request and release
        /// (`POST`/`DELETE /v1/locks/{name}`), a lock name matched as a topic.
        public var locks: [String]?
        public init(publish: [String]?, subscribe: [String]?, locks: [String]? = nil) {
            self.publish = publish
            self.subscribe = subscribe
            self.locks = locks
        }
    }

    public var piglix: Grants
    public var exp: ExpirationClaim?
    public var nbf: NotBeforeClaim?
    public var sub: SubjectClaim?

    public init(piglix: Grants, exp: ExpirationClaim? = nil, nbf: NotBeforeClaim? = nil, sub: SubjectClaim? = nil) {
        self.piglix = piglix
        self.exp = exp
        self.nbf = nbf
        self.sub = sub
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp?.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}
