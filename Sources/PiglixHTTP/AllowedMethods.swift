/// Which methods each path serves, read from the embedded OpenAPI document
/// (docs/openapi.yaml, which a test holds equal to the registered routes):
/// a request whose path is served but not with its method is a `405` with
/// an `Allow` header (RFC 9110 §15.5.6), not a `404`.
struct AllowedMethods: Sendable {
    /// Path templates split into segments (`{name}` matches any one segment),
    /// with their methods in the document's order.
    private let routes: [(segments: [Substring], methods: [String])]

    static let document = AllowedMethods(yaml: OpenAPIDocument.yaml)

    init(yaml: String) {
        var routes: [(segments: [Substring], methods: [String])] = []
        var inPaths = false
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") && !line.isEmpty {
                inPaths = line == "paths:"
                continue
            }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                let path = line.dropFirst(2).dropLast()
                routes.append((path.split(separator: "/", omittingEmptySubsequences: false), []))
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"), !routes.isEmpty {
                let key = line.dropFirst(4).dropLast()
                if ["get", "head", "post", "put", "patch", "delete"].contains(key) {
                    routes[routes.count - 1].methods.append(key.uppercased())
                }
            }
        }
        self.routes = routes
    }

    /// The methods `path` is served with (empty: no route serves it).
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        var methods: [String] = []
        for route in routes where route.segments.count == segments.count {
            let matches = zip(route.segments, segments).allSatisfy { template, segment in
                (template.hasPrefix("{") && template.hasSuffix("}") && !segment.isEmpty) || template == segment
            }
            if matches { methods += route.methods.filter { !methods.contains($0) } }
        }
        return methods
    }
}
