import Foundation
import NIOCore
import PiglixClient
import PiglixTestKit
import PiglixWire
import Synchronization
import XCTest

/// Unbreakable streams (issue 15, docs/patterns.md "Failover"): a client of
/// several nodes keeps one subscription and one publisher across the
/// SIGKILL of the node it was using; the application sees every record
/// once, in order. The records are `safe`: a `fifo` or `total` ack means
/// delivered on the node that answered, which may die before the others
/// have it (docs/patterns.md, "Failover").
final class FailoverTests: XCTestCase {
    /// Three loopback nodes in one view, their URLs, and client settings
    /// that keep retrying (fast) while a node is down.
    private func startThreeNodes() async throws -> (LocalCluster, [String], PiglixClientSettings) {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        var settings = PiglixClientSettings()
        settings.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(400), attemptsMax: 200)
        return (cluster, ["n1", "n2", "n3"].map { cluster.member($0).base }, settings)
    }

    func testClientOfThreeNodesKeepsItsStreamsAcrossTheSIGKILLOfItsNodeWithoutLossOrDuplicate() async throws {
        let (cluster, urls, settings) = try await startThreeNodes()
        let subscriber = try PiglixClient(urls: urls, settings: settings)
        let publishing = try PiglixClient(urls: urls, settings: settings)
        defer {
            Task {
                try? await subscriber.close()
                try? await publishing.close()
            }
        }
        let publisher = IdempotentPublisher(client: publishing, producer: "failover-test")
        let total = 40
        let seen = Mutex<[String]>([])
        // From the earliest retained, so the test does not race the stream's start.
        let subscription = subscriber.subscribe(patterns: ["fo.>"], format: .binary, start: .earliest)
        let reader = Task {
            for try await record in subscription {
                guard case .message(let message) = record else { continue }
                let payload = String(buffer: message.payload)
                let count = seen.withLock { list -> Int in
                    if payload != "warm" || !list.contains("warm") { list.append(payload) }
                    return list.filter { $0 != "warm" }.count
                }
                if count >= total { return }
            }
        }
        defer { reader.cancel() }

        // Until the group of `fo.>` has its subscriber, a record published
        // is delivered to nobody (pub/sub); warm up until one arrives.
        let warm = try PiglixClient(urls: urls, settings: settings)
        try await poll("the subscription is live", timeout: .seconds(30)) {
            _ = try? await warm.publish(topic: "fo.warm", payload: ByteBuffer(string: "warm"))
            return seen.withLock { $0.contains("warm") }
        }
        try? await warm.close()
        seen.withLock { $0.removeAll { $0 == "warm" } }
        for i in 1...total / 2 {
            _ = try await publisher.publish(topic: "fo.orders", payload: ByteBuffer(string: "m\(i)"), delivery: .safe)
        }
        try await poll("the first half delivered", timeout: .seconds(30), detail: "seen \(seen.withLock { $0 })") {
            if reader.isCancelled { return true }
            return seen.withLock { $0.filter { $0 != "warm" }.count } >= total / 2
        }
        if seen.withLock({ $0.filter { $0 != "warm" }.count }) < total / 2 {
            let outcome = await reader.result
            XCTFail("the subscription ended: \(outcome)")
            return
        }
        XCTAssertEqual(subscriber.currentEndpoint.port, cluster.member("n1").httpPort, "both clients start on n1")

        cluster.member("n1").kill()
        for i in (total / 2 + 1)...total {
            _ = try await publisher.publish(topic: "fo.orders", payload: ByteBuffer(string: "m\(i)"), delivery: .safe)
        }
        try await poll("every record delivered", timeout: .seconds(60), detail: "seen \(seen.withLock { $0 })") {
            seen.withLock { $0.filter { $0 != "warm" }.count } >= total
        }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(seen.withLock { $0.filter { $0 != "warm" } }, (1...total).map { "m\($0)" }, "one stream: no loss, no duplicate, in order")
        XCTAssertNotEqual(publishing.currentEndpoint.port, cluster.member("n1").httpPort, "the publisher moved off n1")
        XCTAssertNotEqual(subscriber.currentEndpoint.port, cluster.member("n1").httpPort, "the subscription moved off n1")
    }

    /// A streaming publish through n1 with records numbered by an
    /// `IdempotentPublisher`; n1 is SIGKILLed halfway: the stream moves to
    /// another node and resends what was unacked, and the subscriber sees
    /// every record once, in order, and the publisher one ack per record.
    func testStreamingPublisherResendsItsUnackedRecordsOnTheNextNodeAfterASIGKILL() async throws {
        let (cluster, urls, settings) = try await startThreeNodes()
        // The subscriber uses n3, which stays up.
        let subscriber = try PiglixClient(urls: [urls[2]], settings: settings)
        let publishing = try PiglixClient(urls: urls, settings: settings)
        let seen = Mutex<[String]>([])
        let acks = Mutex<[UInt64]>([])
        let subscription = subscriber.subscribe(patterns: ["fs.>"], format: .binary)
        let reader = Task {
            for try await record in subscription {
                guard case .message(let message) = record else { continue }
                let payload = String(buffer: message.payload)
                seen.withLock { $0.append(payload) }
            }
        }
        defer {
            reader.cancel()
            Task {
                try? await subscriber.close()
                try? await publishing.close()
            }
        }
        let warm = try PiglixClient(urls: [urls[2]], settings: settings)
        try await poll("the subscription is live", timeout: .seconds(30)) {
            _ = try? await warm.publish(topic: "fs.warm", payload: ByteBuffer(string: "warm"))
            return seen.withLock { $0.contains("warm") }
        }
        try? await warm.close()

        let total = 200
        let publisher = IdempotentPublisher(client: publishing, producer: "failover-stream")
        let stream = publisher.publishStream(inFlightMax: 32) { sequence, ack in
            XCTAssertTrue(ack.ok, "record \(sequence): \(ack)")
            acks.withLock { $0.append(sequence) }
        }
        for i in 1...total / 2 { try await stream.send(topic: "fs.orders", payload: ByteBuffer(string: "m\(i)"), delivery: .safe) }
        try await poll("half acked", timeout: .seconds(30)) { acks.withLock { $0.count } >= total / 4 }
        let node = publishing.currentEndpoint.port
        let victim = try XCTUnwrap(cluster.members.first { $0.httpPort == node })
        victim.kill()
        for i in (total / 2 + 1)...total { try await stream.send(topic: "fs.orders", payload: ByteBuffer(string: "m\(i)"), delivery: .safe) }
        try await stream.finish()
        XCTAssertEqual(acks.withLock { $0 }, Array(1...UInt64(total)), "one ack per record, in order")
        XCTAssertGreaterThan(stream.streamsOpened, 1, "the stream moved to another node")
        let expected = (1...total).map { "m\($0)" }
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.withLock({ $0.filter { $0 != "warm" }.count }) < total, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(300))
        let delivered = seen.withLock { $0.filter { $0 != "warm" } }
        XCTAssertEqual(delivered.count, Set(delivered).count, "no duplicate: \(delivered)")
        XCTAssertEqual(delivered, delivered.sorted { Int($0.dropFirst())! < Int($1.dropFirst())! }, "in order")
        // Every acked record reaches the survivor's subscriber, those in
        // flight on the killed node included: the flush now delivers the
        // `safe` records its coordinator acked alone (docs/patterns.md).
        let missing = Set(expected).subtracting(delivered).sorted { Int($0.dropFirst())! < Int($1.dropFirst())! }
        XCTAssertEqual(delivered, expected, "\(missing.count) acked safe records never reached the survivor's subscriber: \(missing)")
    }

    /// `piglix pub --url a,b,c TOPIC` reading standard input: each line is
    /// an idempotent record; n1, its node, is SIGKILLed halfway; every line
    /// reaches the survivor's subscriber once, in order, and the command
    /// prints one id per line and exits 0.
    func testPubReadingStandardInputMovesToTheNextNodeAfterASIGKILL() async throws {
        let (cluster, urls, settings) = try await startThreeNodes()
        let subscriber = try PiglixClient(urls: [urls[2]], settings: settings)
        let seen = Mutex<[String]>([])
        let subscription = subscriber.subscribe(patterns: ["fc.>"], format: .binary)
        let reader = Task {
            for try await record in subscription {
                guard case .message(let message) = record else { continue }
                seen.withLock { $0.append(String(buffer: message.payload)) }
            }
        }
        defer {
            reader.cancel()
            Task { try? await subscriber.close() }
        }
        let warm = try PiglixClient(urls: [urls[2]], settings: settings)
        try await poll("the subscription is live", timeout: .seconds(30)) {
            _ = try? await warm.publish(topic: "fc.warm", payload: ByteBuffer(string: "warm"))
            return seen.withLock { $0.contains("warm") }
        }
        try? await warm.close()

        let pub = Process()
        pub.executableURL = URL(fileURLWithPath: PiglixProcess.binaryPath)
        pub.arguments = ["pub", "--url", urls.joined(separator: ","), "--delivery", "safe", "--producer", "cli-stdin", "fc.lines"]
        let input = Pipe()
        let output = Pipe()
        pub.standardInput = input
        pub.standardOutput = output
        pub.standardError = FileHandle.nullDevice
        try pub.run()
        let printed = Mutex<String>("")
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            printed.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        let total = 120
        try input.fileHandleForWriting.write(contentsOf: Data((1...total / 2).map { "m\($0)\n" }.joined().utf8))
        // (Its acks are printed to a pipe, which stdio buffers: count deliveries.)
        try await poll("a quarter delivered", timeout: .seconds(30)) { seen.withLock { $0.filter { $0 != "warm" }.count } >= total / 4 }
        cluster.member("n1").kill()
        try input.fileHandleForWriting.write(contentsOf: Data(((total / 2 + 1)...total).map { "m\($0)\n" }.joined().utf8))
        try input.fileHandleForWriting.close()
        try await poll("piglix pub exits", timeout: .seconds(60)) { !pub.isRunning }
        output.fileHandleForReading.readabilityHandler = nil
        XCTAssertEqual(pub.terminationStatus, 0, printed.withLock { $0 })
        let ids = printed.withLock { $0 }.split(separator: "\n")
        XCTAssertEqual(ids.count, total, "one id per line: \(ids)")
        XCTAssertFalse(ids.contains { $0.hasPrefix("error") }, "\(ids)")
        let expected = (1...total).map { "m\($0)" }
        try await poll("every line delivered", timeout: .seconds(20)) { seen.withLock { $0.filter { $0 != "warm" }.count } >= total }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(seen.withLock { $0.filter { $0 != "warm" } }, expected, "each line once, in order")
    }
}
