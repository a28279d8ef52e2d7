import Hummingbird
import NIOCore

extension OpenAPIDocument {
    /// The document's bytes, built once.
    static let body = ByteBuffer(string: yaml)

    /// `GET /openapi.yaml`: docs/openapi.yaml, embedded in the binary.
    static func response(_ request: Request, context: some RequestContext) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/yaml", .contentLength: String(body.readableBytes), .cacheControl: "no-cache"],
            body: .init(byteBuffer: body))
    }
}
