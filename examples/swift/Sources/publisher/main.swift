// publisher [--url URL[,URL...]] [--producer NAME] [--delivery fifo|total|safe] TOPIC MESSAGE...
// publisher [--url URL] TOPIC < lines
//
// With --producer, each MESSAGE is published idempotently
// (`IdempotentPublisher`): numbered, and resent with the same number to the
// next node of --url when its answer is lost, so a node's failure neither
// loses nor doubles it (docs/patterns.md).
//
// With MESSAGEs: publishes each one with `publish(topic:payload:)`, waiting for
// each answer before the next (one publisher session, so FIFO order holds),
// and prints each message id. Without: streams standard input, one message
// per line, over one `POST /v1/publish` stream (`publishStream`), with a
// bounded number of records in flight; prints one line per ack.
// Node: --url or $PIGLIX_URL (default http://127.0.0.1:8080).
import NIOCore
import PiglixClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a line to a file descriptor at once (no stdio buffering, so a
/// pipe sees each record as it arrives).
func writeLine(_ text: String, to fd: Int32 = 1) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(fd, bytes.baseAddress, bytes.count) }
}

func usage() -> Never {
    writeLine("usage: publisher [--url URL[,URL...]] [--producer NAME] [--delivery fifo|total|safe] TOPIC [MESSAGE...]", to: 2)
    exit(2)
}

var url = getenv("PIGLIX_URL").map { String(cString: $0) } ?? "http://127.0.0.1:8080"
var delivery = DeliveryLevel.fifo
var producer: String?
var positional: [String] = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--url":
        guard let value = arguments.popFirst() else { usage() }
        url = value
    case "--producer":
        guard let value = arguments.popFirst() else { usage() }
        producer = value
    case "--delivery":
        guard let name = arguments.popFirst(), let level = DeliveryLevel(name: name) else { usage() }
        delivery = level
    default: positional.append(argument)
    }
}
guard let topic = positional.first else { usage() }

/// Publishes `messages` one by one, or standard input's lines over one stream.
func publish(url: String, topic: String, messages: [String], delivery: DeliveryLevel, producer: String?) async throws {
    let client = try PiglixClient(urls: url.split(separator: ",").map(String.init))
    if let producer, !messages.isEmpty {
        let publisher = IdempotentPublisher(client: client, producer: producer)
        for message in messages {
            let ack = try await publisher.publish(topic: topic, payload: ByteBuffer(string: message), delivery: delivery)
            writeLine("\(ack.id ?? "-") \(ack.status)")
        }
    } else if !messages.isEmpty {
        for message in messages {
            let ack = try await client.publish(topic: topic, payload: ByteBuffer(string: message), delivery: delivery)
            writeLine("\(ack.id ?? "-") \(ack.status)")
        }
    } else {
        // One stream for all lines; acks arrive in order while we send.
        let stream = try await client.publishStream(inFlightMax: 256) { ack in
            writeLine(ack.ok ? "\(ack.id ?? "-") \(ack.status)" : "error \(ack.status): \(ack.error ?? "")")
        }
        while let line = readLine() {
            try await stream.send(topic: topic, payload: ByteBuffer(string: line), delivery: delivery)
        }
        let (acked, rejected) = try await stream.finish()
        writeLine("\(acked) published, \(rejected) rejected", to: 2)
        if rejected > 0 { exit(1) }
    }
    try await client.close()
}

do {
    try await publish(url: url, topic: topic, messages: Array(positional.dropFirst()), delivery: delivery, producer: producer)
} catch PiglixClientError.http(let status, let detail) {
    // The node's problem+json `detail` says precisely what was wrong.
    writeLine("publish failed: \(status) \(detail)", to: 2)
    exit(1)
} catch {
    writeLine("publish failed: \(error)", to: 2)
    exit(1)
}
