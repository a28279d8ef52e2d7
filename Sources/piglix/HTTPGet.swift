import Foundation

/// A one-shot HTTP/1.1 GET with `Connection: close` over a plain blocking
/// socket, with a deadline: `piglix probe`'s request and the cluster bench's
/// polls of `/v1/cluster`. One short request is not worth an event loop.
enum HTTPGet {
    /// The most of an answer read: these are short JSON answers.
    static let responseBytesMax = 64 * 1024

    enum Failure: Error, CustomStringConvertible {
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

    struct Response {
        var status: Int
        /// The status line and header fields.
        var head: String
        /// The body as it came (chunked or not).
        var body: [UInt8]

        var isChunked: Bool { head.lowercased().contains("transfer-encoding: chunked") }
        /// The body without its chunked transfer coding.
        var payload: [UInt8] { isChunked ? HTTPGet.dechunk(body) : body }
    }

    /// GET `path` on `host`:`port`, each step bounded by `timeoutMs`.
    static func get(host: String, port: Int, path: String, timeoutMs: Int) throws(Failure) -> Response {
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

    /// `HTTP/1.1 200 OK\r\n…\r\n\r\nbody` → status 200, the head and the body
    /// (empty when the head did not end).
    static func parse(_ answer: [UInt8]) throws(Failure) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        let end = answer.indices.first { answer[$0...].starts(with: separator) }
        let head = String(decoding: answer[..<(end ?? answer.endIndex)], as: UTF8.self)
        guard let statusLine = head.split(separator: "\r\n", maxSplits: 1).first else { throw .malformed("empty") }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw .malformed("status line \(statusLine.prefix(80))")
        }
        return Response(status: status, head: head, body: end.map { Array(answer[($0 + 4)...]) } ?? [])
    }

    /// The payload of a chunked HTTP/1.1 body.
    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard let lineEnd = (i..<bytes.count - 1).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }) else { break }
            let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd + 2
            guard start + size <= bytes.count else { break }
            out.append(contentsOf: bytes[start..<(start + size)])
            i = start + size + 2
        }
        return out
    }
}
