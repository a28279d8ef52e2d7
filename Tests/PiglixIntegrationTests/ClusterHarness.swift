import Foundation
import PiglixTestKit
import XCTest

/// One real `piglix serve` cluster member, optionally inside a network
/// namespace, with the faults the cluster tests inject: SIGKILL, SIGSTOP /
/// SIGCONT, restart.
final class ClusterMember {
    let name: String
    let host: String
    let httpPort: Int
    let clusterPort: Int
    let netns: String?
    var seeds: [String] = []
    var extraArguments: [String] = []
    /// `--data-dir`: the node's flush votes, kept across its restarts.
    var dataDirectory: String?
    private var process: PiglixProcess?
    private let logURL: URL

    init(name: String, host: String = "127.0.0.1", httpPort: Int, clusterPort: Int, netns: String? = nil) {
        self.name = name
        self.host = host
        self.httpPort = httpPort
        self.clusterPort = clusterPort
        self.netns = netns
        self.logURL = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-\(name)-\(httpPort).log")
    }

    var base: String { "http://\(host):\(httpPort)" }
    var clusterAddress: String { "\(host):\(clusterPort)" }

    /// Suspicion 800 ms, heartbeats 100 ms: faults show within a second or two,
    /// and a loaded CI machine does not suspect a live node.
    static let suspicionMilliseconds = 800

    func start() throws {
        let arguments = [
            "serve", "--node-id", name, "--listen", "\(host):\(httpPort)", "--cluster-listen", clusterAddress,
            "--seeds", seeds.joined(separator: ","), "--suspicion-timeout-ms", String(Self.suspicionMilliseconds),
            "--cluster-heartbeat-ms", "100", "--log-level", "info",
        ] + (dataDirectory.map { ["--data-dir", $0] } ?? []) + extraArguments
        // A fresh log for each run.
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        process = try PiglixProcess(arguments, netns: netns, log: logURL)
    }

    var pid: Int32? { process?.processIdentifier }

    /// Peak resident memory so far (VmHWM), in bytes.
    var peakRSS: Int? {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return nil }
        return kib * 1024
    }

    func kill() { process?.kill() }
    func pause() { process?.pause() }
    func resume() { process?.resume() }

    /// "running", or how the process ended: a node that exited (a port
    /// taken, a bad flag) is named as such when a wait fails.
    var processState: String {
        guard let process else { return "not started" }
        return process.isRunning ? "running" : "exited with status \(process.terminationStatus)"
    }

    var logTail: String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }
}

/// A cluster of real nodes on loopback (or in namespaces) and the checks the
/// tests make through curl.
final class LocalCluster {
    let members: [ClusterMember]

    init(members: [ClusterMember]) {
        self.members = members
        let seeds = members.map(\.clusterAddress)
        // One data directory per cluster, so no test sees another's votes.
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("piglix-cluster-\(UUID().uuidString)")
        for member in members {
            member.seeds = seeds
            member.dataDirectory = data.path
        }
    }

    static func loopback(_ count: Int) throws -> LocalCluster {
        LocalCluster(
            members: try (1...count).map { i in
                ClusterMember(name: "n\(i)", httpPort: try freePort(), clusterPort: try freePort())
            })
    }

    func start() throws { for member in members { try member.start() } }

    func member(_ name: String) -> ClusterMember { members.first { $0.name == name }! }

    /// Waits until every node of `nodes` reports the same primary view with
    /// exactly `names` as members; returns that view's status.
    @discardableResult
    func waitForView(
        _ names: Set<String>, on nodes: [ClusterMember], timeout: Duration = .seconds(20), file: StaticString = #filePath, line: UInt = #line
    ) async throws -> [String: Any] {
        var last: [[String: Any]] = []
        do {
            try await poll("a common view \(names.sorted()) on \(nodes.map(\.name))", timeout: timeout, interval: .milliseconds(50),
                detail: "last: \(last)", file: file, line: line) {
                last = nodes.map { Curl.json("\($0.base)/v1/cluster") ?? [:] }
                let views = Set(last.map { $0["view"] as? Int ?? -1 })
                let agree = last.allSatisfy { status in
                    Set(status["members"] as? [String] ?? []) == names && status["primary"] as? Bool == true
                }
                return agree && views.count == 1
            }
        } catch {
            for node in nodes { print("---- \(node.name) log (\(node.processState)) ----\n\(node.logTail)") }
            throw error
        }
        return last[0]
    }
}

/// Three network namespaces on one bridge: a partition is a blackhole route
/// between namespaces, so the test (in the root namespace, on the bridge)
/// still reaches every node.
extension XCTestCase {
    /// `count` nodes `n1`… each in its own network namespace (HTTP on 8080,
    /// cluster on 7000 of its address), started and in one view; the
    /// network is torn down when the test ends. Skips the test where
    /// namespaces cannot be made.
    func startNamespaceCluster(count: Int = 3) async throws -> (NamespaceNetwork, LocalCluster, [ClusterMember]) {
        let (made, why) = NamespaceNetwork.make(count: count)
        guard let network = made else {
            throw XCTSkip("network namespaces are not available here (\(why)): the partition case is skipped; every other cluster test ran")
        }
        addTeardownBlock { network.tearDown() }
        let members = (0..<count).map { i in
            ClusterMember(name: "n\(i + 1)", host: network.address(i), httpPort: 8080, clusterPort: 7000, netns: network.names[i])
        }
        let cluster = LocalCluster(members: members)
        try cluster.start()
        try await cluster.waitForView(Set(members.map(\.name)), on: members)
        return (network, cluster, members)
    }
}

final class NamespaceNetwork {
    let prefix: String
    let names: [String]
    let bridge: String
    static let subnet = "10.77.0"

    /// nil (with the reason) when namespaces cannot be made here.
    static func make(count: Int) -> (NamespaceNetwork?, String) {
        guard getuid() == 0 else { return (nil, "not root") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return (nil, "no /usr/sbin/ip (iproute2)") }
        let prefix = "pgx\(getpid() % 10000)"
        let network = NamespaceNetwork(prefix: prefix, count: count)
        if let error = network.setUp() {
            network.tearDown()
            return (nil, error)
        }
        return (network, "")
    }

    private init(prefix: String, count: Int) {
        self.prefix = prefix
        self.names = (1...count).map { "\(prefix)n\($0)" }
        self.bridge = "\(prefix)br"
    }

    func address(_ index: Int) -> String { "\(Self.subnet).\(index + 1)" }

    @discardableResult
    static func ip(_ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "\(error)") }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    private func setUp() -> String? {
        var steps: [[String]] = [
            ["link", "add", bridge, "type", "bridge"],
            ["addr", "add", "\(Self.subnet).254/24", "dev", bridge],
            ["link", "set", bridge, "up"],
        ]
        for (i, ns) in names.enumerated() {
            let host = "\(prefix)h\(i)"
            steps += [
                ["netns", "add", ns],
                ["link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns],
                ["link", "set", host, "master", bridge],
                ["link", "set", host, "up"],
                ["netns", "exec", ns, "ip", "addr", "add", "\(address(i))/24", "dev", "eth0"],
                ["netns", "exec", ns, "ip", "link", "set", "eth0", "up"],
                ["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
            ]
        }
        for step in steps {
            let (status, error) = Self.ip(step)
            if status != 0 { return "ip \(step.joined(separator: " ")) failed: \(error)" }
        }
        return nil
    }

    /// Cuts `a` from `b` both ways (blackhole routes in both namespaces).
    func cut(_ a: Int, _ b: Int) {
        Self.ip(["netns", "exec", names[a], "ip", "route", "add", "blackhole", "\(address(b))/32"])
        Self.ip(["netns", "exec", names[b], "ip", "route", "add", "blackhole", "\(address(a))/32"])
    }

    func heal(_ a: Int, _ b: Int) {
        Self.ip(["netns", "exec", names[a], "ip", "route", "del", "blackhole", "\(address(b))/32"])
        Self.ip(["netns", "exec", names[b], "ip", "route", "del", "blackhole", "\(address(a))/32"])
    }

    func tearDown() {
        for ns in names { Self.ip(["netns", "del", ns]) }
        Self.ip(["link", "del", bridge])
    }

    deinit { tearDown() }
}
