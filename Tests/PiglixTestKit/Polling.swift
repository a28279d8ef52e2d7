import Foundation
import Synchronization
import XCTest

/// Why a test-kit helper gave up (it has failed the test already where it says so).
public enum TestServerError: Error {
    case binaryMissing(String)
    case exited(Int32)
    case noPort
    case timeout(String)
}

/// Polls `condition` until it holds or `timeout` passes (nats-server's
/// `checkFor`); at the deadline fails the test, with `detail` (what was
/// seen) after the reason.
public func poll(
    _ what: String, timeout: Duration = .seconds(10), interval: Duration = .milliseconds(20),
    detail: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now >= deadline {
            let seen = detail()
            XCTFail("timed out after \(timeout) waiting until \(what)" + (seen.isEmpty ? "" : "; \(seen)"), file: file, line: line)
            throw TestServerError.timeout(what)
        }
        try await Task.sleep(for: interval)
    }
}

/// A value behind a lock, shareable between tasks.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
