import HTTPTypes
import Hummingbird
import NIOCore

/// The web console: a page at `/` with its script and style sheet, all
/// embedded in the binary (``ConsoleAssets``), no build step, no CDN.
///
/// Caching: the page is `no-cache` (revalidated each load, cheap through its
/// `ETag`); it names its script and style sheet with `?v=<etag>`, and a
/// request carrying the current version is `immutable` for a year, so a new
/// binary's page never runs an old script. Anything else is `no-cache`.
enum ConsoleRoutes {
    /// Adds `GET`/`HEAD` for `/`, `/console/console.js`, `/console/console.css`.
    static func add<Context: RequestContext>(to router: Router<Context>) {
        for asset in ConsoleAssets.all {
            router.get(RouterPath(asset.path)) { request, _ in asset.response(to: request, includeBody: true) }
            router.head(RouterPath(asset.path)) { request, _ in asset.response(to: request, includeBody: false) }
        }
    }
}

/// One embedded file and how it is served.
struct ConsoleAsset: Sendable {
    let path: String
    let contentType: String
    let body: ByteBuffer
    /// A strong validator: FNV-1a 64 of the bytes, in hex.
    let etag: String
    /// Versioned by `?v=` (script, style sheet) or always revalidated (page).
    let versioned: Bool
    let extraHeaders: HTTPFields

    init(path: String, contentType: String, text: String, versioned: Bool, extraHeaders: HTTPFields = [:]) {
        self.path = path
        self.contentType = contentType
        self.body = ByteBuffer(string: text)
        self.etag = Self.fnv1a64Hex(text)
        self.versioned = versioned
        self.extraHeaders = extraHeaders
    }

    /// `path?v=<etag>`, the URL the page uses.
    var versionedURL: String { "\(path)?v=\(etag)" }

    func response(to request: Request, includeBody: Bool) -> Response {
        var headers: HTTPFields = [
            .contentType: contentType,
            .eTag: "\"\(etag)\"",
            .xContentTypeOptions: "nosniff",
        ]
        if versioned, request.uri.queryParameters.get("v") == etag {
            headers[.cacheControl] = "public, max-age=31536000, immutable"
        } else {
            headers[.cacheControl] = "no-cache"
        }
        headers.append(contentsOf: extraHeaders)
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: {
            let tag = $0.trimmingPrefix(" ").trimmingPrefix("W/")
            return tag == "\"\(etag)\"" || tag == "*"
        }) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentLength] = String(body.readableBytes)
        return Response(status: .ok, headers: headers, body: includeBody ? .init(byteBuffer: body) : .init())
    }

    static func fnv1a64Hex(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
