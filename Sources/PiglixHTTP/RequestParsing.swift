import PiglixTopics
import HTTPTypes
import Hummingbird
import PiglixBroker
import PiglixWire

extension HTTPField.Name {
    static let piglixDelivery = HTTPField.Name("Piglix-Delivery")!
    static let piglixMessageID = HTTPField.Name("Piglix-Message-Id")!
    static let piglixProducer = HTTPField.Name("Piglix-Producer")!
    static let piglixSequence = HTTPField.Name("Piglix-Sequence")!
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
    static let xAccelBuffering = HTTPField.Name("X-Accel-Buffering")!
}

/// Prefix of request headers that a single publish carries as user headers.
let userHeaderPrefix = "piglix-header-"

enum RequestParsing {
    /// The subscribe stream format from `?format=` or `Accept`; NDJSON when the
    /// client states no preference (curl sends `*/*`).
    static func streamFormat(_ request: Request) throws -> StreamFormat {
        if let format = request.uri.queryParameters.get("format") {
            switch format {
            case "ndjson": return .ndjson
            case "sse": return .sse
            case "binary": return .binary
            default: throw Problem(.badRequest, "format \(format) is not one of ndjson, sse, binary")
            }
        }
        guard let accept = request.headers[.accept], !accept.isEmpty else { return .ndjson }
        var wildcard = false
        var best: (StreamFormat, Double)?
        for part in accept.split(separator: ",") {
            let pieces = part.split(separator: ";")
            let type = pieces.first.map { $0.trimmingCharacters(in: " \t").lowercased() } ?? ""
            var quality = 1.0
            for parameter in pieces.dropFirst() {
                let pair = parameter.trimmingCharacters(in: " \t")
                if pair.hasPrefix("q=") { quality = Double(pair.dropFirst(2)) ?? 0 }
            }
            guard quality > 0 else { continue }
            let format: StreamFormat
            switch type {
            case "text/event-stream": format = .sse
            case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/json": format = .ndjson
            case binaryFramesMediaType: format = .binary
            case "*/*", "application/*", "text/*":
                wildcard = true
                continue
            default: continue
            }
            if best == nil || quality > best!.1 { best = (format, quality) }
        }
        if let best { return best.0 }
        if wildcard { return .ndjson }
        throw Problem(
            .notAcceptable,
            "Accept \(accept) names none of text/event-stream, application/x-ndjson, \(binaryFramesMediaType)")
    }

    /// `Content-Encoding` of a request body: nil for identity, 415 for anything unknown.
    static func contentCoding(_ request: Request) throws -> ContentCoding? {
        guard let value = request.headers[.contentEncoding] else { return nil }
        switch ContentCoding.parse(contentEncoding: value) {
        case .success(let coding): return coding
        case .failure(let unsupported):
            throw Problem(
                .unsupportedMediaType, "Content-Encoding \(unsupported.name) is not supported; use gzip, deflate or identity",
                headers: [.acceptEncoding: "gzip, deflate"])
        }
    }

    static func deliveryLevel(_ request: Request) throws -> DeliveryLevel {
        guard let value = request.headers[.piglixDelivery] else { return .fifo }
        guard let level = DeliveryLevel(name: value.trimmingCharacters(in: " \t").lowercased()) else {
            throw Problem(.badRequest, "Piglix-Delivery \(value) is not one of fifo, total, safe")
        }
        return level
    }

    /// `Piglix-Producer` and `Piglix-Sequence` of a single publish (idempotent
    /// publish): both or neither, else a 400 saying what is wrong.
    static func idempotence(_ request: Request) throws -> (String?, UInt64) {
        let producer = request.headers[.piglixProducer]
        let sequenceText = request.headers[.piglixSequence]
        do {
            let sequence = try sequenceText.map { text throws(RecordError) in try Idempotence.sequence(Substring(text)) }
            return try Idempotence.pair(producer: producer, sequence: sequence)
        } catch {
            throw Problem(.badRequest, error.reason)
        }
    }

    /// A bounded integer query parameter.
    static func intParameter(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = request.uri.queryParameters.get(name) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw Problem(.badRequest, "\(name)=\(text) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    static func percentDecoded(_ text: Substring) -> String {
        guard text.contains("%") else { return String(text) }
        return String(text).removingPercentEncoding ?? String(text)
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> Substring {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return text
    }
}

extension String {
    /// Percent-decoding without Foundation (path parameters).
    var removingPercentEncoding: String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
