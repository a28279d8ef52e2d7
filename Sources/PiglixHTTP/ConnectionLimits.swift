import Logging
import NIOCore
import Synchronization

/// Open connections per client address (IP). Past `perAddressMax` a new
/// connection is closed as soon as it is accepted, so one client cannot
/// hold all of the node's sockets; refusals are counted for /metrics and
/// logged at most once per `logInterval`.
public final class ConnectionLimiter: Sendable {
    /// 0: no limit.
    public let perAddressMax: Int
    let logInterval: Duration

    private struct State {
        var open: [String: Int] = [:]
        var openTotal = 0
        var refusedTotal: UInt64 = 0
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    public init(perAddressMax: Int, logInterval: Duration = .seconds(10)) {
        self.perAddressMax = perAddressMax
        self.logInterval = logInterval
    }

    /// Connections open now, over all addresses.
    public var openConnections: Int { state.withLock { $0.openTotal } }
    /// Connections refused since start.
    public var refusedConnections: UInt64 { state.withLock { $0.refusedTotal } }

    /// Takes a slot for `channel`'s address until the channel closes; false:
    /// the address has `perAddressMax` connections open, refuse this one.
    func admit(_ channel: any Channel, logger: Logger) -> Bool {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        let now = ContinuousClock.now
        let (admitted, report): (Bool, (open: Int, refused: Int)?) = state.withLock { state in
            let open = state.open[address, default: 0]
            if perAddressMax > 0 && open >= perAddressMax {
                state.refusedTotal += 1
                state.refusedSinceLog += 1
                guard state.lastLog.map({ now - $0 >= logInterval }) ?? true else { return (false, nil) }
                defer {
                    state.lastLog = now
                    state.refusedSinceLog = 0
                }
                return (false, (open, state.refusedSinceLog))
            }
            state.open[address] = open + 1
            state.openTotal += 1
            return (true, nil)
        }
        if let report {
            logger.warning(
                "refused \(report.refused) connection(s) from \(address): it has \(report.open) open, the most one address may have (--max-connections-per-address); next report in \(logInterval) at the earliest")
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in self.release(address) }
        }
        return admitted
    }

    private func release(_ address: String) {
        state.withLock { state in
            state.openTotal -= 1
            let open = state.open[address, default: 1] - 1
            state.open[address] = open > 0 ? open : nil
        }
    }
}
