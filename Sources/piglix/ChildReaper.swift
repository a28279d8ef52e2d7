import Foundation

/// Kills the bench's children when the bench itself is interrupted
/// (SIGINT, SIGTERM, SIGHUP); errors and normal exits stop them in `defer`.
/// The handler is a plain C signal handler: it only reads a fixed table of
/// pids and calls `kill` and `_exit`, which are async-signal-safe.
enum ChildReaper {
    static let capacity = 16
    /// Child pids, 0 for a free slot; written by the bench task only.
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Int32> = {
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        return slots
    }()
    static let signals = [SIGINT, SIGTERM, SIGHUP]

    static func add(_ pid: Int32) {
        for i in 0..<capacity where slots[i] == 0 {
            slots[i] = pid
            return
        }
    }

    static func remove(_ pid: Int32) {
        for i in 0..<capacity where slots[i] == pid { slots[i] = 0 }
    }

    final class Handlers {
        func cancel() {
            for signalNumber in ChildReaper.signals { signal(signalNumber, SIG_DFL) }
        }
    }

    static func install() -> Handlers {
        _ = slots
        for signalNumber in signals { signal(signalNumber, reaperSignalHandler) }
        return Handlers()
    }
}

private func reaperSignalHandler(_ signalNumber: Int32) {
    for i in 0..<ChildReaper.capacity {
        let pid = ChildReaper.slots[i]
        if pid > 0 { _ = kill(pid, SIGKILL) }
    }
    let message: StaticString = "piglix bench: interrupted, killed the cluster nodes\n"
    _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
    _exit(128 + signalNumber)
}
