import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixGroups
import PiglixTopics

#if canImport(Glibc)
import Glibc
#endif


extension ClusterNode {
    // MARK: Seeds

    func scheduleSeedResolution() {
        let interval = TimeAmount.milliseconds(Int64(settings.seedResolveMilliseconds))
        loop.scheduleTask(in: interval) {
            guard !self.box.value.stopped else { return }
            let seeds = self.settings.seeds
            let logger = self.logger
            Task {
                let addresses = await Self.resolve(seeds, logger: logger)
                self.loop.execute { self.transport.connect(to: addresses) }
                self.scheduleSeedResolution()
            }
        }
    }

    /// Every `ip:port` the seed entries name (a DNS name may give several).
    static func resolve(_ seeds: [String], logger: Logger) async -> [String] {
        var out: [String] = []
        for seed in seeds {
            guard let (host, port) = ClusterTransport.split(seed) else {
                logger.warning("ignoring seed \(seed): expected host:port")
                continue
            }
            // getaddrinfo blocks: it runs on NIO's blocking-I/O thread pool,
            // never on a cooperative-pool thread.
            var ips = (try? await NIOThreadPool.singleton.runIfActive { resolveHost(host) }) ?? []
            if ips.isEmpty {
                // Let the dialer try the name itself (and say why it fails).
                logger.debug("seed \(host) does not resolve (yet); dialing it by name")
                ips = [host]
            }
            for ip in ips {
                let address = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                if !out.contains(address) { out.append(address) }
            }
        }
        return out
    }
}

/// The addresses a host name resolves to (IP literals resolve to themselves).
func resolveHost(_ host: String) -> [String] {
    // An IP literal needs no resolver (a minimal container image may have
    // no NSS configuration at all).
    var v4 = in_addr()
    var v6 = in6_addr()
    if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return [host] }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
    defer { freeaddrinfo(first) }
    var out: [String] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
            let ip = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !out.contains(ip) { out.append(ip) }
        }
        cursor = info.pointee.ai_next
    }
    return out
}

/// A weak reference that can be captured by `@Sendable` closures: the
/// transport's callbacks need the node, which does not exist yet when the
/// transport is created in the node's `init`.
///
/// `@unchecked` is sound here and nowhere else it might be reused: `value`
/// is written once, at the end of `ClusterNode.init`, before `start` lets
/// the transport accept or dial a connection (the only source of
/// callbacks), and only read after that; the start's `loop.submit` orders
/// the write before every read on the loop.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}
