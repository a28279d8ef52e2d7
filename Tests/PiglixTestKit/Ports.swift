import Foundation
import Synchronization

/// A port for a test server on 127.0.0.1: free when asked, below the
/// kernel's ephemeral range, and never handed out twice in one test process.
///
/// Why not the kernel's pick for `127.0.0.1:0`: that port lies in the
/// ephemeral range, so between the pick and the server's bind any outgoing
/// connection (curl, a node dialling its peers) may take it as its local
/// port, and the server then fails with "address in use". A node restarted
/// on its old port after seconds of test traffic is the likeliest victim
/// (seen in CI: a cluster that never formed its first view).
public func freePort() throws -> Int {
    try PortAllocator.shared.next()
}

final class PortAllocator: Sendable {
    static let shared = PortAllocator()

    private let range: Range<Int>
    private let cursor: Mutex<Int>

    private init() {
        // Linux: "32768\t60999". Ports from 10000 up to that bound are never
        // given to outgoing connections.
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let ephemeralStart = text.split(whereSeparator: { $0 == "\t" || $0 == " " || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
        let low = 10000
        range = low..<max(low + 2000, ephemeralStart)
        // A random start, so two test processes at once rarely walk the same ports.
        cursor = Mutex(Int.random(in: range))
    }

    func next() throws -> Int {
        for _ in 0..<range.count {
            let port = cursor.withLock { cursor in
                let port = cursor
                cursor = cursor + 1 < range.upperBound ? cursor + 1 : range.lowerBound
                return port
            }
            if Self.bindable(port) { return port }
        }
        throw TestServerError.noPort
    }

    /// True when nothing holds `port` on 127.0.0.1 now.
    private static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }
}
