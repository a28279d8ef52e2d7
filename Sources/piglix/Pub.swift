import ArgumentParser
import Synchronization
import NIOCore
import NIOPosix
import PiglixClient
import PiglixWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish messages: DATA, or one message per line of standard input.",
        discussion: """
            With DATA, publishes one message (POST /v1/topics/TOPIC) and prints its id. \
            Without, streams each line of standard input as one message over one \
            POST /v1/publish stream (binary frames) and prints each ack's id, or \
            `error STATUS: reason`, one line per input line, in order. Exits non-zero \
            if any record was rejected.
            """)

    @Argument(help: "The topic, such as sensors.paris.temp.")
    var topic: String
    @Argument(help: "The payload. When absent, each line of standard input is one message.")
    var data: String?
    @Option(help: "Delivery level: fifo, total or safe.")
    var delivery: String = "fifo"
    @Option(name: .customLong("header"), help: "A user header name=value; repeatable.")
    var headers: [String] = []
    @Option(help: "The node's URL, or several nodes' URLs separated by commas (a failed node's work moves to the next). [env PIGLIX_URL, default http://127.0.0.1:8080]")
    var url: String?
    @Option(help: "Publish idempotently as this producer (Piglix-Producer), retrying on the next node until answered (DATA, or each line of standard input); with several --url nodes a random name is used when absent.")
    var producer: String?
    @Option(help: "With --producer: this record's sequence number (Piglix-Sequence, default 1); for standard input, the first line's, then one up per line.")
    var sequence: UInt64?

    func run() async throws {
        guard let level = DeliveryLevel(name: delivery) else {
            throw ValidationError("--delivery \(delivery) is not one of fifo, total, safe")
        }
        var userHeaders: [MessageHeader] = []
        for pair in headers {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ValidationError("--header \(pair) is not name=value")
            }
            userHeaders.append(MessageHeader(name: String(pair[..<equals]), value: String(pair[pair.index(after: equals)...])))
        }
        let client = try ClientURL.makeClient(url)
        defer { Task { try? await client.close() } }

        if sequence != nil && producer == nil { throw ValidationError("--sequence needs --producer") }
        if let data {
            do {
                let ack: PublishAck
                if producer != nil || client.endpoints.count > 1 {
                    let publisher = IdempotentPublisher(client: client, producer: producer)
                    ack = try await publisher.publish(
                        topic: topic, payload: ByteBuffer(string: data), delivery: level, headers: userHeaders, sequence: sequence ?? 1)
                } else {
                    ack = try await client.publish(topic: topic, payload: ByteBuffer(string: data), delivery: level, headers: userHeaders)
                }
                print(ack.id ?? "")
            } catch {
                printError("\(error)")
                throw ExitCode.failure
            }
            return
        }

        if producer != nil || client.endpoints.count > 1 {
            try await publishLinesWithFailover(client: client, level: level, headers: userHeaders)
            return
        }
        let stream = try await client.publishStream(inFlightMax: 1024) { ack in
            if ack.ok {
                print(ack.id ?? "")
            } else {
                print("error \(ack.status): \(ack.error ?? "")")
            }
        }
        let topic = self.topic
        try await Self.forEachLine { line in
            try await stream.send(PublishRecord(topic: topic, payload: line, delivery: level, headers: userHeaders))
        }
        let (_, rejected) = try await stream.finish()
        try? await client.close()
        if rejected > 0 { throw ExitCode.failure }
    }

    /// Standard input's lines with several `--url` nodes or `--producer`:
    /// each line is an idempotent record (sequence numbers from `--sequence`,
    /// default 1, up), and a broken stream or a 503 moves the unacked ones to
    /// the next node; the cluster acks a record it already took with its
    /// first id, so each line is delivered once and printed once, in order.
    private func publishLinesWithFailover(client: PiglixClient, level: DeliveryLevel, headers: [MessageHeader]) async throws {
        let publisher = IdempotentPublisher(client: client, producer: producer, firstSequence: sequence ?? 1)
        let rejected = Atomic<Int>(0)
        let stream = publisher.publishStream(inFlightMax: 1024) { _, ack in
            if ack.ok {
                print(ack.id ?? "")
            } else {
                rejected.add(1, ordering: .relaxed)
                print("error \(ack.status): \(ack.error ?? "")")
            }
        }
        let topic = self.topic
        try await Self.forEachLine { line in
            try await stream.send(topic: topic, payload: line, delivery: level, headers: headers)
        }
        try await stream.finish()
        try? await client.close()
        if rejected.load(ordering: .relaxed) > 0 { throw ExitCode.failure }
    }

    /// Calls `body` with each line of standard input (the last one even
    /// without a newline).
    private static func forEachLine(_ body: (ByteBuffer) async throws -> Void) async throws {
        var lines = LineSplitter(lineBytesMax: 64 << 20)
        while let chunk = try await StandardInput.read() {
            lines.append(chunk)
            while let item = lines.next() {
                guard case .line(let line) = item else { continue }
                try await body(line)
            }
        }
        if case .line(let line)? = lines.finish() { try await body(line) }
    }
}

/// `--url` (or `PIGLIX_URL`) to a client.
enum ClientURL {
    static let defaultURL = "http://127.0.0.1:8080"

    static func makeClient(_ flag: String?) throws -> PiglixClient {
        let text = flag ?? Environment.get("PIGLIX_URL") ?? defaultURL
        do {
            return try PiglixClient(urls: text.split(separator: ",").map { String($0.filter { $0 != " " }) })
        } catch {
            throw ValidationError("--url \(text): \(error)")
        }
    }
}

/// Reads standard input in chunks on NIO's blocking thread pool, so no
/// cooperative thread blocks in `read(2)`.
enum StandardInput {
    static func read() async throws -> ByteBuffer? {
        try await NIOThreadPool.singleton.runIfActive {
            var buffer = ByteBuffer()
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 65536) { bytes in
                while true {
                    let result = Glibc.read(0, bytes.baseAddress, bytes.count)
                    if result < 0 && errno == EINTR { continue }
                    return max(result, 0)
                }
            }
            return count == 0 ? nil : buffer
        }
    }
}

func printError(_ text: String) {
    writeAll(fd: 2, ByteBuffer(string: text + "\n"))
}

/// Writes all of `bytes` to a file descriptor (stdout 1, stderr 2), unbuffered.
func writeAll(fd: Int32, _ bytes: ByteBuffer) {
    bytes.withUnsafeReadableBytes { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
