import Foundation
import Synchronization
import XCTest

/// Paths in this repository, for tests that run its scripts and examples.
public enum Repo {
    /// `<root>/Tests/PiglixTestKit/Scripts.swift` → `<root>`.
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    public static func read(_ relative: String) throws -> String { try String(contentsOfFile: path(relative), encoding: .utf8) }

    /// A fresh directory under `.build/` for one test's files.
    public static func scratchDirectory(_ name: String) throws -> String {
        let directory = path(".build/test-scratch/\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }
}

/// The executable `tool` on `PATH`, if any.
public func which(_ tool: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Skips the test, naming the tool, when `tool` is not installed.
public func requireTool(_ tool: String, install: String) throws -> String {
    guard let path = which(tool) else {
        throw XCTSkip("skipped: \(tool) is not installed (\(install)); .ci/run installs it")
    }
    return path
}

/// Skips the test when python3 cannot import `modules`, naming them.
public func requirePythonModules(_ modules: [String], install: String) async throws {
    _ = try requireTool("python3", install: "apt-get install python3")
    let check = try await runTool(["python3", "-c", "import " + modules.joined(separator: ", ")], timeout: .seconds(60))
    if check.status != 0 {
        throw XCTSkip("skipped: python3 cannot import \(modules.joined(separator: ", ")) (\(install)); .ci/run installs it")
    }
}

/// What a finished command printed (stdout and stderr, interleaved) and its status.
public struct ToolRun: CustomStringConvertible {
    public var status: Int32
    public var output: String
    public var description: String { "exit \(status):\n\(output)" }
}

/// What a child process printed, collected by a reader thread.
final class OutputBuffer: Sendable {
    private let state = Mutex<(bytes: [UInt8], finished: Bool)>(([], false))

    /// Reads `fd` until end of file on a thread of its own, then closes it.
    init(reading fd: Int32) {
        Thread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                state.withLock { $0.bytes += chunk[..<count] }
            }
            close(fd)
            state.withLock { $0.finished = true }
        }.start()
    }

    var text: String { state.withLock { String(decoding: $0.bytes, as: UTF8.self) } }
    var finished: Bool { state.withLock { $0.finished } }
}

/// A running process whose stdout and stderr (one pipe, as a terminal would
/// interleave them) a test can poll while it runs.
public final class ScriptProcess {
    private let process = Process()
    public let command: String
    private let buffer: OutputBuffer

    /// Starts `arguments` (the first is looked up on `PATH` unless it is a path).
    public init(
        _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        currentDirectory: String = Repo.root.path
    ) throws {
        precondition(!arguments.isEmpty)
        command = arguments.joined(separator: " ")
        let executable = arguments[0].contains("/") ? arguments[0] : (which(arguments[0]) ?? arguments[0])
        process.executableURL = URL(fileURLWithPath: executable, relativeTo: URL(fileURLWithPath: currentDirectory))
        process.arguments = Array(arguments.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        if let input {
            let directory = Repo.path(".build/test-scratch/input")
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let inputPath = "\(directory)/\(UUID().uuidString)"
            _ = FileManager.default.createFile(atPath: inputPath, contents: Data(input.utf8))
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        // The reader owns a duplicate of the read end, so the Pipe object may go.
        buffer = OutputBuffer(reading: dup(output.fileHandleForReading.fileDescriptor))
        try process.run()
        try? output.fileHandleForWriting.close()
        try? output.fileHandleForReading.close()
    }

    /// Everything printed so far.
    public var output: String { buffer.text }

    /// Polls until the output contains `text` (fails the test with the output otherwise).
    public func waitForOutput(containing text: String, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !output.contains(text) {
            if ContinuousClock.now >= deadline {
                XCTFail("timed out after \(timeout) waiting until `\(command)` printed \(text)\n--- output ---\n\(output)")
                throw TestServerError.timeout(text)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the process to end by itself; on timeout, kills it and fails.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> ToolRun {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                stop()
                XCTFail("`\(command)` did not end within \(timeout)\n--- output ---\n\(output)")
                throw TestServerError.timeout(command)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.waitUntilExit()
        // Let the reader drain the pipe; a grandchild that kept it open
        // (a daemonized helper) must not hold the test up for long.
        let drained = ContinuousClock.now + .seconds(2)
        while !buffer.finished, ContinuousClock.now < drained { try await Task.sleep(for: .milliseconds(10)) }
        return ToolRun(status: process.terminationStatus, output: output)
    }

    /// SIGTERM, then SIGKILL if it lingers (a child may inherit a signal
    /// mask that blocks SIGTERM); then SIGKILL to what it started that is
    /// still running (a script's `curl` in a pipeline, which would
    /// otherwise keep its stream, and the server's state, alive).
    public func stop() {
        guard process.isRunning else { return }
        let descendants = Self.descendants(of: process.processIdentifier)
        process.terminate()
        for _ in 0..<25 {
            if !process.isRunning { break }
            usleep(20_000)
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for pid in descendants { kill(pid, SIGKILL) }
        // Bounded: Foundation has been seen never to notice the end of a
        // script killed while its pipeline ran (a zombie, `isRunning` true).
        for _ in 0..<250 {
            if !process.isRunning { return }
            usleep(20_000)
        }
    }

    /// The processes below `pid`, from `/proc/*/stat` (Linux).
    static func descendants(of pid: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.range(of: ")", options: .backwards)
            else { continue }
            // After "pid (comm)": state, then the parent's pid.
            let fields = stat[close.upperBound...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { children[parent, default: []].append(child) }
        }
        var out: [Int32] = []
        var next = [pid]
        while let p = next.popLast() {
            for c in children[p] ?? [] {
                out.append(c)
                next.append(c)
            }
        }
        return out
    }

    deinit { stop() }
}

/// Runs a command to completion with a deadline.
public func runTool(
    _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
    currentDirectory: String = Repo.root.path, timeout: Duration = .seconds(60)
) async throws -> ToolRun {
    let script = try ScriptProcess(arguments, environment: environment, input: input, currentDirectory: currentDirectory)
    return try await script.waitForExit(timeout: timeout)
}

/// Parses JSON text (one document) into Foundation values.
public func parseJSON(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> Any {
    do {
        return try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    } catch {
        XCTFail("not JSON: \(text.prefix(500))", file: file, line: line)
        throw error
    }
}
