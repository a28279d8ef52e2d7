// subscriber [--url URL] [--after ID|earliest] [--count N] PATTERN...
//
// Prints `<id> <topic> <payload>` for each message matching any PATTERN and
// `# ...` for control records. The Subscription reconnects by itself when the
// node goes away or ends the stream, and resumes after the last id it
// yielded, so nothing the node retains is lost or repeated. With --count it
// stops after N messages and prints `# last-id <ID>`: pass that to --after
// in a later run to go on where this one stopped.
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
    writeLine("usage: subscriber [--url URL] [--after ID|earliest] [--count N] PATTERN...", to: 2)
    exit(2)
}

var url = getenv("PIGLIX_URL").map { String(cString: $0) } ?? "http://127.0.0.1:8080"
var start = SubscribeStart.live
var count: Int?
var patterns: [String] = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--url":
        guard let value = arguments.popFirst() else { usage() }
        url = value
    case "--after":
        guard let id = arguments.popFirst() else { usage() }
        start = id == "earliest" ? .earliest : .after(id)
    case "--count":
        guard let text = arguments.popFirst(), let number = Int(text), number > 0 else { usage() }
        count = number
    default: patterns.append(argument)
    }
}
if patterns.isEmpty { usage() }

/// Prints records until `count` messages arrived (or forever), then the last id.
func tail(url: String, patterns: [String], start: SubscribeStart, count: Int?) async throws {
    var settings = PiglixClientSettings()
    settings.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(2))
    let client = try PiglixClient(url: url, settings: settings)
    var received = 0
    var connections = 0
    var records = client.subscribe(patterns: patterns, format: .ndjson, start: start).makeAsyncIterator()
    while let record = try await records.next() {
        if records.connections != connections {
            if connections > 0 { writeLine("# reconnected, resuming after \(records.lastMessageID ?? "the start")") }
            connections = records.connections
        }
        switch record {
        case .message(let message):
            writeLine("\(message.id) \(message.topic) \(String(buffer: message.payload))")
            received += 1
        case .control(.view(let group, let view, let members, let primary)):
            writeLine("# view \(view) of \(group): \(members.joined(separator: " "))\(primary ? "" : " (not primary)")")
        case .control(.gap(let lost, let reason)):
            writeLine("# gap: \(lost) messages lost (\(reason))")
        case .control(.end(let reason)):
            writeLine("# end: \(reason); reconnecting")
        case .control(.heartbeat):
            break
        }
        if let count, received >= count { break }
    }
    writeLine("# last-id \(records.lastMessageID ?? "")")
    try await client.close()
}

do {
    try await tail(url: url, patterns: patterns, start: start, count: count)
} catch PiglixClientError.http(let status, let detail) {
    // A 4xx is not retried: the node's problem `detail` says what is wrong.
    writeLine("subscribe refused: \(status) \(detail)", to: 2)
    exit(1)
} catch {
    writeLine("subscribe failed: \(error)", to: 2)
    exit(1)
}
