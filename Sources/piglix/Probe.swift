import ArgumentParser

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `piglix probe`: one HTTP/1.1 GET of `/healthz` (or another path) on a
/// node, exit 0 on a 2xx answer. It is the container health check
/// (`HEALTHCHECK CMD ["piglix", "probe"]`), so the runtime image needs no
/// curl and no shell. Plain blocking sockets with a deadline: the probe is
/// one short request, not worth an event loop.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a node over HTTP/1.1: exit 0 when GET PATH answers 2xx (container health check).",
        discussion: """
            By default probes /healthz on the node's own listen address, read from PIGLIX_LISTEN
            as `piglix serve` does, with a wildcard host (0.0.0.0, ::) read as loopback.
            Prints the status and body; exits 1 on a non-2xx answer, a refused connection or a timeout.
            """)

    @Argument(help: "The path to GET, such as /healthz or /readyz.")
    var path: String = "/healthz"
    @Option(help: "The node's host:port. [env PIGLIX_LISTEN, default 127.0.0.1:8080]")
    var address: String?
    @Option(help: "Give up after this many milliseconds.")
    var timeoutMs: Int = 2000

    /// The most of the answer read: probes answer with a short JSON body.
    static let responseBytesMax = 64 * 1024

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
            let (status, body) = try Self.get(host: host, port: listen.port, path: path, timeoutMs: timeoutMs)
            print("\(status) \(path) \(body.trimmedOfWhitespace())")
            if !(200..<300).contains(status) { throw ExitCode.failure }
        } catch let error as ProbeError {
            printError("probe \(host):\(listen.port)\(path): \(error)")
            throw ExitCode.failure
        }
    }

    enum ProbeError: Error, CustomStringConvertible {
        case resolve(String)
        case connect(String)
        case io(String)
        case malformed(String)

        var description: String {
            switch self {
            case .resolve(let reason): return "cannot resolve: \(reason)"
            case .connect(let reason): return "cannot connect: \(reason)"
            case .io(let reason): return "request failed: \(reason)"
            case .malformed(let reason): return "malformed answer: \(reason)"
            }
        }
    }

    /// GET `path` with `Connection: close`; returns the status and body.
    static func get(host: String, port: Int, path: String, timeoutMs: Int) throws(ProbeError) -> (Int, String) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else { throw .resolve(String(cString: gai_strerror(resolved))) }
        defer { freeaddrinfo(list) }

        var timeout = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else {
                lastError = String(cString: strerror(errno))
                continue
            }
            defer { close(fd) }
            // On Linux SO_SNDTIMEO bounds connect() too.
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                lastError = String(cString: strerror(errno))
                continue
            }
            let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            let request = Array(
                "GET \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: piglix-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
            var sent = 0
            while sent < request.count {
                let written = request[sent...].withUnsafeBytes { bytes in
                    send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
                }
                guard written > 0 else { throw .io(String(cString: strerror(errno))) }
                sent += written
            }
            var answer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while answer.count < responseBytesMax {
                let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if received == 0 { break }
                guard received > 0 else {
                    if answer.isEmpty { throw .io(String(cString: strerror(errno))) }
                    break  // a timeout after the head: judge what arrived
                }
                answer.append(contentsOf: chunk[..<received])
            }
            return try parse(answer)
        }
        throw .connect(lastError)
    }

    /// `HTTP/1.1 200 OK\r\n…\r\n\r\nbody` → (200, body). Chunked bodies are
    /// shown as they came; only the status decides.
    static func parse(_ answer: [UInt8]) throws(ProbeError) -> (Int, String) {
        let text = String(decoding: answer, as: UTF8.self)
        guard let statusLine = text.split(separator: "\r\n", maxSplits: 1).first else { throw .malformed("empty") }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw .malformed("status line \(statusLine.prefix(80))")
        }
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
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
