import Foundation

/// What the bench reads from `/proc` about the machine and its node
/// processes: CPU time spent (which a noisy neighbour moves much less than
/// throughput) and the load average said beside every figure.
enum BenchSystem {
    /// User plus system CPU seconds of process `pid` so far (fields 14 and
    /// 15 of `/proc/PID/stat`, utime and stime, in clock ticks); nil when
    /// it is not running.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return cpuSeconds(statLine: text)
    }

    /// utime + stime of one `/proc/PID/stat` line, in seconds. The command
    /// name in parentheses may hold spaces, so the fields are counted from
    /// its closing parenthesis: state is field 3, utime 14, stime 15.
    static func cpuSeconds(statLine text: String) -> Double? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes
    /// them ("0.54 0.13 0.04"); nil when it cannot be read.
    static func loadAverage() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ").prefix(3)
        return fields.count == 3 ? fields.joined(separator: " ") : nil
    }

    /// The 1-minute load average, for RESULT lines ("?" when unknown).
    static var loadAverageOneMinute: String { loadAverage().map { String($0.split(separator: " ")[0]) } ?? "?" }

    /// Prints `load average at start: 1m 5m 15m`.
    static func printLoadAverage() {
        print("load average at start: \(loadAverage() ?? "unknown")")
    }
}

/// One machine-readable line, `RESULT key=value ...`, in the keys the
/// peers' load generators print (`../shared/peers/natsbench.c`:
/// `delivered_msgs_per_s`, `p99_us` …), so a script reads both alike.
struct ResultLine {
    private var fields: [(key: String, value: String)] = []

    mutating func add(_ key: String, _ value: String) { fields.append((key, value)) }
    mutating func add(_ key: String, _ value: Int) { add(key, String(value)) }
    /// `decimals` digits after the point.
    mutating func add(_ key: String, _ value: Double, decimals: Int = 0) {
        add(key, value.isFinite ? String(format: "%.\(decimals)f", value) : "nan")
    }

    var text: String { (["RESULT"] + fields.map { "\($0.key)=\($0.value)" }).joined(separator: " ") }
}

/// CPU per delivered message over a measured window: node CPU seconds and
/// messages delivered (at every subscriber) read at its start and at its
/// end. The window starts when measuring starts and ends when every
/// subscriber has everything, so the messages it counts are the ones
/// whose work it contains.
struct NodeCPUWindow {
    var cpuAtStart: [Double]
    var deliveredAtStart: Int

    /// µs of node CPU (summed over the nodes) per message delivered in the
    /// window, and the parts: each node's CPU seconds and the deliveries.
    func end(cpu: [Double], delivered: Int) -> (microsPerMessage: Double, nodeSeconds: [Double], deliveries: Int) {
        let nodeSeconds = zip(cpuAtStart, cpu).map { max($1 - $0, 0) }
        let deliveries = delivered - deliveredAtStart
        let total = nodeSeconds.reduce(0, +)
        return (deliveries > 0 ? total / Double(deliveries) * 1e6 : .nan, nodeSeconds, deliveries)
    }
}
