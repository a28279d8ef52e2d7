import ArgumentParser
import Foundation
import PiglixClient

/// One `piglix serve` child of the bench (this executable), its output to
/// the file `log` (appended) or to the bench's own. The cluster bench's
/// ``ChildReaper`` kills it if the bench is interrupted.
final class ServeChild {
    let process = Process()

    init(_ arguments: [String], log: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["serve"] + arguments
        if let log {
            if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
            if let handle = FileHandle(forWritingAtPath: log) {
                handle.seekToEndOfFile()
                process.standardError = handle
                process.standardOutput = handle
            }
        }
        try process.run()
        ChildReaper.add(process.processIdentifier)
    }

    var isRunning: Bool { process.isRunning }

    /// User plus system CPU seconds so far (0 once it stopped).
    func cpuSeconds() -> Double {
        guard process.isRunning else { return 0 }
        return BenchSystem.cpuSeconds(pid: process.processIdentifier) ?? 0
    }

    /// VmHWM, read while it runs.
    func peakRSS() -> String? {
        guard process.isRunning,
            let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return line.dropFirst(6).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// SIGKILL, now.
    func kill() {
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
        reap()
    }

    /// SIGTERM; ``finishStopping()`` waits for it. Split so that several
    /// children shut down at once.
    func requestStop() {
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGTERM) }
    }

    /// Waits up to 2 s after ``requestStop()``, then SIGKILLs.
    func finishStopping() {
        for _ in 0..<100 where process.isRunning { usleep(20_000) }
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
        reap()
    }

    /// SIGTERM, then SIGKILL if it is still running after 2 s.
    func stop() {
        requestStop()
        finishStopping()
    }

    private func reap() {
        process.waitUntilExit()
        ChildReaper.remove(process.processIdentifier)
    }
}

/// The single-node bench's `piglix serve` on a free loopback port.
struct ServerProcess {
    let child: ServeChild
    let port: Int

    static func start() async throws -> ServerProcess {
        let port = try loopbackFreePort()
        let child = try ServeChild(["--listen", "127.0.0.1:\(port)", "--log-level", "warning"])
        let server = ServerProcess(child: child, port: port)
        // Poll until it accepts connections.
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            guard child.isRunning else { throw ValidationError("piglix serve exited with status \(child.process.terminationStatus)") }
            let probe = PiglixClient(host: "127.0.0.1", port: port)
            do {
                try await probe.connect()
                try? await probe.close()
                return server
            } catch {
                try? await probe.close()
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        server.stop()
        throw ValidationError("piglix serve did not listen on port \(port) within 15 s")
    }

    func peakRSS() -> String? { child.peakRSS() }

    func stop() { child.stop() }
}

/// `piglix serve` children forming one cluster on loopback. Their stderr
/// goes to one log file per node.
final class LocalCluster {
    struct Node {
        var name: String
        var httpPort: Int
        var clusterPort: Int
    }

    let nodes: [Node]
    let suspicionTimeoutMs: Int
    let logDirectory: String
    private var children: [ServeChild?]

    init(count: Int, suspicionTimeoutMs: Int) throws {
        var ports = Set<Int>()
        while ports.count < 2 * count { ports.insert(try loopbackFreePort()) }
        let list = Array(ports)
        nodes = (0..<count).map { Node(name: "n\($0 + 1)", httpPort: list[2 * $0], clusterPort: list[2 * $0 + 1]) }
        self.suspicionTimeoutMs = suspicionTimeoutMs
        logDirectory = NSTemporaryDirectory() + "piglix-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        children = Array(repeating: nil, count: count)
    }

    /// Spawns every node and waits for one view of all of them; returns the
    /// seconds that took.
    func start() async throws -> Double {
        let began = monotonicNanos()
        for index in nodes.indices { try spawn(index) }
        try await awaitFullView(timeout: .seconds(30))
        return Double(monotonicNanos() - began) / 1e9
    }

    private func spawn(_ index: Int) throws {
        let node = nodes[index]
        let seeds = nodes.map { "127.0.0.1:\($0.clusterPort)" }.joined(separator: ",")
        children[index] = try ServeChild(
            [
                "--node-id", node.name, "--listen", "127.0.0.1:\(node.httpPort)", "--cluster-listen", "127.0.0.1:\(node.clusterPort)",
                "--seeds", seeds, "--suspicion-timeout-ms", String(suspicionTimeoutMs), "--log-level", "warning",
            ], log: "\(logDirectory)/\(node.name).log")
    }

    /// Waits until every running node reports the same primary view of all nodes.
    func awaitFullView(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            var views: [UInt64] = []
            for index in nodes.indices {
                guard let child = children[index], child.isRunning else {
                    throw ClusterBenchFailure("\(nodes[index].name) is not running (see \(logDirectory)/\(nodes[index].name).log)")
                }
                if let status = try? status(of: index), status.primary, status.members.count == nodes.count { views.append(status.view) }
            }
            if views.count == nodes.count && Set(views).count == 1 { return }
            guard ContinuousClock.now < deadline else {
                let seen = nodes.indices.map { index in
                    (try? status(of: index)).map { "\(nodes[index].name): view \($0.view) \($0.members)" } ?? "\(nodes[index].name): no answer"
                }
                throw ClusterBenchFailure("no view of \(nodes.count) members on every node within \(timeout): \(seen.joined(separator: "; "))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// `GET /v1/cluster` on one node, with a 1 s timeout.
    func status(of index: Int) throws -> ClusterInfo {
        let response: HTTPGet.Response
        do {
            response = try HTTPGet.get(host: "127.0.0.1", port: nodes[index].httpPort, path: "/v1/cluster", timeoutMs: 1000)
        } catch {
            throw ClusterBenchFailure("GET /v1/cluster on \(nodes[index].name): \(error)")
        }
        guard response.status == 200 else { throw ClusterBenchFailure("GET /v1/cluster on \(nodes[index].name): HTTP \(response.status)") }
        return try JSONDecoder().decode(ClusterInfo.self, from: Data(response.payload))
    }

    /// User plus system CPU seconds of each node so far (0 for one not
    /// running), then of this process (the bench's clients).
    func cpuSeconds() -> [Double] {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let own =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return children.map { $0?.cpuSeconds() ?? 0 } + [own]
    }

    /// The pids of the nodes now running (for CPU readings from a task).
    func nodePIDs() -> [Int32] {
        children.map { child in child.map { $0.isRunning ? $0.process.processIdentifier : 0 } ?? 0 }
    }

    func kill(_ index: Int) {
        children[index]?.kill()
        children[index] = nil
    }

    func restart(_ index: Int) throws {
        kill(index)
        try spawn(index)
    }

    func printPeakRSS() {
        let parts = children.enumerated().compactMap { index, child in child?.peakRSS().map { "\(nodes[index].name) \($0)" } }
        if !parts.isEmpty { print("\nnode peak RSS (VmHWM): \(parts.joined(separator: ", "))") }
    }

    /// SIGTERM to all, then SIGKILL whatever is still running after 2 s.
    func stopAll() {
        for child in children.compactMap({ $0 }) { child.requestStop() }
        for child in children.compactMap({ $0 }) { child.finishStopping() }
        children = Array(repeating: nil, count: nodes.count)
    }
}

/// `GET /v1/cluster`.
struct ClusterInfo: Decodable {
    var node: String
    var view: UInt64
    var members: [String]
    var primary: Bool
}

/// A port the kernel picks for a socket bound to 127.0.0.1:0, then released.
func loopbackFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ValidationError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw ValidationError("bind() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}
