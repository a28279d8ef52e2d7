import Foundation
import Synchronization
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
    private(set) var process: Process?
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
    var pid: Int32? { process?.processIdentifier }

    /// Suspicion 800 ms, heartbeats 100 ms: faults show within a second or two,
    /// and a loaded CI machine does not suspect a live node.
    static let suspicionMilliseconds = 800

    func start() throws {
        let binary = TestServer.binaryPath
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw TestServerError.binaryMissing(binary) }
        let arguments = [
            "serve", "--node-id", name, "--listen", "\(host):\(httpPort)", "--cluster-listen", clusterAddress,
            "--seeds", seeds.joined(separator: ","), "--suspicion-timeout-ms", String(Self.suspicionMilliseconds),
            "--cluster-heartbeat-ms", "100", "--log-level", "info",
        ] + extraArguments
        let process = Process()
        if let netns {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", netns, binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        self.process = process
    }

    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func pause() { if let pid { Foundation.kill(pid, SIGSTOP) } }
    func resume() { if let pid { Foundation.kill(pid, SIGCONT) } }

    var logTail: String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }

    deinit {
        if let process, process.isRunning {
            Foundation.kill(process.processIdentifier, SIGCONT)
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// A cluster of real nodes on loopback (or in namespaces) and the checks the
/// tests make through curl.
final class LocalCluster {
    let members: [ClusterMember]

    init(members: [ClusterMember]) {
        self.members = members
        let seeds = members.map(\.clusterAddress)
        for member in members { member.seeds = seeds }
    }

    static func loopback(_ count: Int) throws -> LocalCluster {
        LocalCluster(
            members: try (1...count).map { i in
                ClusterMember(name: "n\(i)", httpPort: try TestServer.freePort(), clusterPort: try TestServer.freePort())
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
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            last = nodes.map { Curl.json("\($0.base)/v1/cluster") ?? [:] }
            let views = Set(last.map { $0["view"] as? Int ?? -1 })
            let agree = last.allSatisfy { status in
                Set(status["members"] as? [String] ?? []) == names && status["primary"] as? Bool == true
            }
            if agree && views.count == 1 { return last[0] }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("no common view \(names.sorted()) on \(nodes.map(\.name)) within \(timeout); last: \(last)", file: file, line: line)
        for node in nodes { print("---- \(node.name) log ----\n\(node.logTail)") }
        throw TestServerError.timeout("view \(names)")
    }
}

/// curl as the independent HTTP/2 peer.
enum Curl {
    struct Reply {
        var status: Int
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    }

    static func request(_ arguments: [String], timeout: Int = 10) -> Reply {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "--max-time", String(timeout), "-w", "\n%{http_code}"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return Reply(status: 0, body: "\(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        var text = String(decoding: data, as: UTF8.self)
        let status = Int(text.split(separator: "\n").last ?? "") ?? 0
        if let cut = text.lastIndex(of: "\n") { text = String(text[..<cut]) }
        return Reply(status: status, body: text)
    }

    static func json(_ url: String) -> [String: Any]? {
        let reply = request(["--http2-prior-knowledge", url], timeout: 2)
        return reply.status == 200 ? reply.json : nil
    }

    /// Publishes one message over HTTP/2 with prior knowledge. A `503` that
    /// says the message was not taken (outside the primary component for a
    /// moment, or flow control) is retried after a pause, as `Retry-After`
    /// asks; any other answer is returned.
    static func publish(_ base: String, topic: String, data: String, level: String = "fifo", retries: Int = 20) -> Reply {
        var reply = Reply(status: 0, body: "")
        for _ in 0...retries {
            reply = request(["--http2-prior-knowledge", "-H", "Piglix-Delivery: \(level)", "-d", data, "\(base)/v1/topics/\(topic)"])
            guard reply.status == 503, reply.body.contains("not in the primary component") || reply.body.contains("pending queue full") else {
                return reply
            }
            usleep(200_000)
        }
        return reply
    }
}

/// A streaming subscriber: `curl -N --http2-prior-knowledge`, NDJSON records
/// collected as they arrive.
final class CurlSubscriber: @unchecked Sendable {
    private let process = Process()
    private let buffer = Locked(Data())
    private let input: Pipe?
    private let output = Pipe()

    /// With `upload`, curl POSTs its stdin as a streaming body (no
    /// Content-Length) fed by ``write(_:)``: a streaming publisher whose
    /// acks are collected as records.
    init(_ url: String, headers: [String] = [], upload: Bool = false) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        input = upload ? Pipe() : nil
        process.arguments = ["-sN", "--http2-prior-knowledge"] + (upload ? ["-X", "POST", "-T", "-"] : [])
            + headers.flatMap { ["-H", $0] } + [url]
        if let input { process.standardInput = input }
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let buffer = self.buffer
        output.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if !chunk.isEmpty { buffer.withLock { $0.append(chunk) } }
        }
        try process.run()
    }

    var records: [[String: Any]] {
        let text = String(decoding: buffer.withLock { $0 }, as: UTF8.self)
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    var messages: [[String: Any]] { records.filter { $0["type"] as? String == "message" } }
    var payloads: [String] { messages.compactMap { $0["data"] as? String } }
    var views: [[String: Any]] { records.filter { $0["type"] as? String == "view" } }

    func waitFor(
        _ what: String, timeout: Duration = .seconds(15), file: StaticString = #filePath, line: UInt = #line,
        _ condition: (CurlSubscriber) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(self) {
            if ContinuousClock.now >= deadline {
                XCTFail("subscriber timed out waiting for \(what); got \(payloads.count) messages: \(payloads.suffix(10))", file: file, line: line)
                throw TestServerError.timeout(what)
            }
            try await Task.sleep(for: .milliseconds(25))
        }
    }

    /// The first record (a `view`) says the subscription is live.
    func waitUntilLive() async throws { try await waitFor("the first view record") { !$0.views.isEmpty } }

    /// curl reads an upload from stdin in blocks of up to 64 KiB and waits
    /// for a full block: each write is padded with empty lines (NDJSON skips
    /// them) so curl sends it at once.
    func write(_ text: String) {
        input?.fileHandleForWriting.write(Data((text + String(repeating: "\n", count: 256 * 1024)).utf8))
    }

    func closeInput() { try? input?.fileHandleForWriting.close() }

    var isRunning: Bool { process.isRunning }

    /// Ends curl (SIGKILL, then reaped) and stops watching its output: a
    /// dispatch source left on a pipe that is then closed can crash libdispatch.
    func stop() {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        output.fileHandleForReading.readabilityHandler = nil
    }

    /// Ends curl at once: its connection closes, as when a client dies.
    func kill() { stop() }

    deinit { stop() }
}

/// Three network namespaces on one bridge: a partition is a blackhole route
/// between namespaces, so the test (in the root namespace, on the bridge)
/// still reaches every node.
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

/// A value behind a lock, shareable between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
