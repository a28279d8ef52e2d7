import HTTPTypes
import Hummingbird
import NIOCore
import PiglixWire

/// An error answered as `application/problem+json` (RFC 9457) with a precise
/// `detail`: every 4xx and 5xx of the front end.
public struct Problem: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var detail: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    public func response() -> Response {
        let body = body()
        var fields = headers
        fields[.contentType] = "application/problem+json"
        fields[.contentLength] = String(body.readableBytes)
        return Response(status: status, headers: fields, body: .init(byteBuffer: body))
    }

    /// The problem+json document.
    func body() -> ByteBuffer {
        var body = ByteBuffer()
        body.writeStaticString("{\"type\":\"about:blank\",\"title\":")
        body.writeJSONString(status.reasonPhrase.isEmpty ? Self.status(status.code).reasonPhrase : status.reasonPhrase)
        body.writeStaticString(",\"status\":")
        body.writeDecimal(UInt64(status.code))
        body.writeStaticString(",\"detail\":")
        body.writeJSONString(detail)
        body.writeStaticString("}\n")
        return body
    }

    /// The status for a code, with its standard reason phrase for the title.
    static func status(_ code: Int) -> HTTPResponse.Status {
        switch code {
        case 400: return .badRequest
        case 404: return .notFound
        case 405: return .methodNotAllowed
        case 406: return .notAcceptable
        case 409: return .conflict
        case 413: return .contentTooLarge
        case 415: return .unsupportedMediaType
        case 429: return .tooManyRequests
        case 503: return .serviceUnavailable
        default: return HTTPResponse.Status(code: code)
        }
    }
}

/// Turns every error a route throws, Hummingbird's own (404, 405, 413) included,
/// into problem+json.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return problem.response()
        } catch let error as HTTPError {
            let detail: String
            switch error.status {
            case .notFound:
                // OPTIONS is the CORS preflight's (answered before the router
                // when it has an `Origin`); without one it stays a 404, as
                // docs/openapi.yaml documents it.
                let allowed = request.method == .options ? [] : AllowedMethods.document.methods(for: request.uri.path)
                if !allowed.isEmpty {
                    var headers = error.headers
                    headers[.allow] = allowed.joined(separator: ", ")
                    return Problem(
                        .methodNotAllowed,
                        "\(request.uri.path) does not take \(request.method); it takes \(allowed.joined(separator: ", ")) (docs/protocol.md)",
                        headers: headers
                    ).response()
                }
                detail = "no route for \(request.method) \(request.uri.path); the API is in docs/protocol.md"
            case .contentTooLarge: detail = error.body ?? "request body is too large"
            default: detail = error.body ?? error.status.reasonPhrase
            }
            return Problem(error.status, detail, headers: error.headers).response()
        } catch let error as any HTTPResponseError {
            return Problem(error.status, "\(error)").response()
        } catch {
            context.logger.error("unexpected error on \(request.method) \(request.uri.path): \(error)")
            return Problem(.internalServerError, "internal error: \(error)").response()
        }
    }
}
