import ArgumentParser
import NIOCore
import PiglixClient
import PiglixWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct Sub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to patterns and print the records.",
        discussion: """
            Prints every record as NDJSON (the subscribe format of docs/protocol.md), as SSE \
            events with --format sse, or `topic: payload` lines with --format text (control \
            records then go to standard error). --format also picks the wire format \
            (text uses binary frames). Reconnects by itself and resumes after the last \
            message printed. Stop with Ctrl-C.
            """)

    @Argument(help: "Topic patterns, such as sensors.*.temp or logs.>.")
    var patterns: [String]
    @Option(help: "ndjson, sse, binary or text.")
    var format: String = "ndjson"
    @Option(help: "Start: earliest, or a message id to resume after. Default: new messages only.")
    var from: String?
    @Flag(help: "Ask for a gzip-compressed stream.")
    var gzip = false
    @Option(help: "The node's URL, or several nodes' URLs separated by commas: the stream resumes on the next node after the last message seen. [env PIGLIX_URL, default http://127.0.0.1:8080]")
    var url: String?

    enum Output { case ndjson, sse, text }

    func run() async throws {
        guard !patterns.isEmpty else { throw ValidationError("give at least one pattern") }
        let wire: StreamFormat
        let output: Output
        switch format {
        case "ndjson": (wire, output) = (.ndjson, .ndjson)
        case "binary": (wire, output) = (.binary, .ndjson)
        case "sse": (wire, output) = (.sse, .sse)
        case "text": (wire, output) = (.binary, .text)
        default: throw ValidationError("--format \(format) is not one of ndjson, sse, binary, text")
        }
        let start: SubscribeStart
        switch from {
        case nil: start = .live
        case "earliest"?: start = .earliest
        case let id?: start = .after(id)
        }
        let client = try ClientURL.makeClient(url)
        var out = ByteBuffer()
        do {
            for try await record in client.subscribe(patterns: patterns, format: wire, start: start, compression: gzip ? .gzip : nil) {
                out.clear()
                switch output {
                case .ndjson:
                    RecordPrinter.writeJSON(record, into: &out)
                    out.writeInteger(UInt8(ascii: "\n"))
                case .sse:
                    RecordPrinter.writeSSE(record, into: &out)
                case .text:
                    guard case .message(let message) = record else {
                        var line = ByteBuffer()
                        RecordPrinter.writeJSON(record, into: &line)
                        printError(String(buffer: line))
                        continue
                    }
                    out.writeString(message.topic)
                    out.writeStaticString(": ")
                    var payload = message.payload
                    out.writeBuffer(&payload)
                    out.writeInteger(UInt8(ascii: "\n"))
                }
                writeAll(fd: 1, out)
            }
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// Writes delivered records back in the NDJSON and SSE formats of docs/protocol.md ("Records").
enum RecordPrinter {
    static func writeJSON(_ record: DeliveredRecord, into out: inout ByteBuffer) {
        switch record {
        case .control(let control):
            RecordEncoder.writeControlJSON(control, into: &out)
        case .message(let message):
            out.writeStaticString("{\"type\":\"message\",\"topic\":")
            out.writeJSONString(message.topic)
            out.writeStaticString(",\"id\":")
            out.writeJSONString(message.id)
            out.writeStaticString(",\"delivery\":\"")
            out.writeString(message.delivery.name)
            out.writeInteger(UInt8(ascii: "\""))
            out.writeHeadersAndPayloadJSON(
                headers: message.headers, payload: message.payload, payloadIsText: UTF8Check.isValid(message.payload))
            out.writeInteger(UInt8(ascii: "}"))
        }
    }

    static func writeSSE(_ record: DeliveredRecord, into out: inout ByteBuffer) {
        switch record {
        case .control(let control):
            out.writeStaticString("event: ")
            out.writeString(control.typeName)
        case .message(let message):
            out.writeStaticString("event: message\nid: ")
            out.writeString(message.id)
        }
        out.writeStaticString("\ndata: ")
        writeJSON(record, into: &out)
        out.writeStaticString("\n\n")
    }
}
