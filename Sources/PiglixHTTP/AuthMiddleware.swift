import HTTPTypes
import Hummingbird
import PiglixAuth
import PiglixTopics

/// With `--jwt-key-file` or `--jwks-file`: every route but the probes, the
/// API description and the console's static page needs a valid bearer
/// token; the routes then check its grants (docs/protocol.md,
/// "Authorization"). The token comes from `Authorization: Bearer`, else the
/// `piglixAuthorization` cookie, else the `authorization` query parameter
/// (what `EventSource` can send).
struct AuthMiddleware: RouterMiddleware {
    typealias Context = PiglixRequestContext
    let authorizer: Authorizer

    /// Paths anyone may read: liveness and readiness probes, the API
    /// description, and the console's page and assets (its data calls carry
    /// the token).
    static func isOpen(_ path: Substring) -> Bool {
        path == "/healthz" || path == "/readyz" || path == "/openapi.yaml" || path == "/" || path.hasPrefix("/console")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .options || Self.isOpen(request.uri.path[...]) { return try await next(request, context) }
        guard let token = Self.token(request) else { throw Self.problem(.missingToken) }
        var context = context
        do { context.access = try await authorizer.access(token: token) } catch { throw Self.problem(error) }
        return try await next(request, context)
    }

    static func token(_ request: Request) -> String? {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1].drop { $0 == " " }) }
        }
        for cookie in request.headers[values: .cookie] {
            for pair in cookie.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].drop(while: { $0 == " " }) == "piglixAuthorization" { return String(kv[1]) }
            }
        }
        return request.uri.queryParameters.get("authorization").map { String($0) }
    }

    static func problem(_ error: AuthError) -> Problem {
        var headers: HTTPFields = [:]
        if error.status == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"piglix\"" }
        return Problem(Problem.status(error.status), error.description, headers: headers)
    }
}

extension Access {
    /// 403 unless every pattern may be subscribed to; names the first that may not.
    func checkSubscribe(_ patterns: [TopicPattern]) throws {
        for pattern in patterns where !maySubscribe(pattern) {
            throw AuthMiddleware.problem(.forbidden("the token does not grant subscribe on \(pattern.name)"))
        }
    }
}

extension Access {
    /// The error ack of a record whose topic the token does not grant, nil
    /// when it is granted (or is no valid topic: the broker says why).
    func publishRefusal(_ topic: String, limits: TopicLimits) -> String? {
        guard let parsed = try? Topic(topic, limits: limits), !mayPublish(parsed) else { return nil }
        return "the token does not grant publish on \(topic)"
    }
}
