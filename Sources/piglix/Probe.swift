import ArgumentParser

/// `piglix probe`: one HTTP/1.1 GET of `/healthz` (or another path) on a
/// node (``HTTPGet``), exit 0 on a 2xx answer. It is the container health
/// check (`HEALTHCHECK CMD ["piglix", "probe"]`), so the runtime image needs
/// no curl and no shell.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a node over HTTP/1.1: exit 0 when GET PATH answers 2xx (container health check).",
        discussion: """
            By default probes /healthz on the node's own listen address, read from PIGLIX_LISTEN \
            as `piglix serve` does, with a wildcard host (0.0.0.0, ::) read as loopback. \
            Prints the status and body; exits 1 on a non-2xx answer, a refused connection or a timeout.
            """)

    @Argument(help: "The path to GET, such as /healthz or /readyz.")
    var path: String = "/healthz"
    @Option(help: "The node's host:port. [env PIGLIX_LISTEN, default 127.0.0.1:8080]")
    var address: String?
    @Option(help: "Give up after this many milliseconds.")
    var timeoutMs: Int = 2000

    func run() throws {
        guard path.hasPrefix("/"), !path.contains(" "), !path.contains("\r"), !path.contains("\n") else {
            throw ValidationError("path \(path) must start with / and hold no spaces or line breaks")
        }
        guard (1...60_000).contains(timeoutMs) else { throw ValidationError("--timeout-ms must be 1…60000") }
        let text = address ?? Environment.get("PIGLIX_LISTEN") ?? "127.0.0.1:8080"
        guard let listen = ListenAddress(text) else { throw ValidationError("address \(text) is not host:port") }
        let host: String
        switch listen.host {
        case "0.0.0.0", "": host = "127.0.0.1"
        case "::", "[::]": host = "::1"
        default: host = listen.host
        }
        do {
            let response = try HTTPGet.get(host: host, port: listen.port, path: path, timeoutMs: timeoutMs)
            // A chunked body is shown as it came; only the status decides.
            print("\(response.status) \(path) \(String(decoding: response.body, as: UTF8.self).trimmedOfWhitespace())")
            if !(200..<300).contains(response.status) { throw ExitCode.failure }
        } catch let error as HTTPGet.Failure {
            printError("probe \(host):\(listen.port)\(path): \(error)")
            throw ExitCode.failure
        }
    }
}

extension String {
    fileprivate func trimmedOfWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
