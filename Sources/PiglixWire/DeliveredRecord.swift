import PiglixTopics
import NIOCore

/// A record of the subscribe stream as a client reads it.
public enum DeliveredRecord: Sendable {
    case message(DeliveredMessage)
    case control(ControlRecord)
}

/// A delivered message as a client reads it.
public struct DeliveredMessage: Sendable {
    public var topic: String
    public var id: String
    public var delivery: DeliveryLevel
    public var headers: [MessageHeader]
    public var payload: ByteBuffer
    /// A work queue stream's record: the queue's name (ack with it and `id`).
    public var queue: String?
    /// A work queue record delivered before to a member that left or failed.
    public var redelivered: Bool

    public init(
        topic: String, id: String, delivery: DeliveryLevel, headers: [MessageHeader], payload: ByteBuffer, queue: String? = nil,
        redelivered: Bool = false
    ) {
        self.topic = topic
        self.id = id
        self.delivery = delivery
        self.headers = headers
        self.payload = payload
        self.queue = queue
        self.redelivered = redelivered
    }
}

/// The last topic a subscribe stream decoder made a String of: a stream
/// mostly repeats a few topics, and a topic over 15 bytes costs an allocation.
public struct TopicReuse: Sendable {
    private var last: String?

    public init() {}

    /// Reads a u16-length-prefixed string, reusing the last one when equal.
    mutating func readShortString(from body: inout ByteBuffer) -> String? {
        guard let length: UInt16 = body.getInteger(at: body.readerIndex),
            body.readableBytes >= 2 + Int(length)
        else { return nil }
        let start = body.readerIndex + 2
        if let last, last.utf8.count == Int(length),
            body.withUnsafeReadableBytes({ $0[2..<(2 + Int(length))].elementsEqual(last.utf8) })
        {
            body.moveReaderIndex(to: start + Int(length))
            return last
        }
        let topic = body.readShortString()
        last = topic
        return topic
    }
}

extension DeliveredRecord {
    /// Decodes a `message` or `event` frame.
    public static func decode(frame: Frame) throws -> DeliveredRecord {
        var topics = TopicReuse()
        return try decode(frame: frame, topics: &topics)
    }

    /// Decodes a `message` or `event` frame; a topic equal to the previous
    /// one `topics` saw reuses its String instead of making a new one.
    public static func decode(frame: Frame, topics: inout TopicReuse) throws -> DeliveredRecord {
        var body = frame.body
        switch frame.type {
        case .message:
            guard let rawLevel: UInt8 = body.readInteger(), let topic = topics.readShortString(from: &body),
                let id = body.readShortString(), let headerCount: UInt8 = body.readInteger()
            else { throw FrameError.malformed("short message frame") }
            var headers: [MessageHeader] = []
            for _ in 0..<headerCount {
                guard let name = body.readShortString(), let value = body.readShortString() else {
                    throw FrameError.malformed("message frame ends inside a header")
                }
                headers.append(MessageHeader(name: name, value: value))
            }
            return .message(
                DeliveredMessage(topic: topic, id: id, delivery: DeliveryLevel(rawValue: rawLevel) ?? .fifo, headers: headers, payload: body))
        case .event:
            return try decode(json: body)
        case .publish, .ack:
            throw FrameError.malformed("unexpected \(frame.type) frame on a subscribe stream")
        }
    }

    /// Decodes one JSON record (an NDJSON line, an SSE `data:` field or an event frame body).
    public static func decode(json: ByteBuffer) throws -> DeliveredRecord {
        let value = try json.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        guard case .object(let members) = value else { throw JSONError(offset: 0, reason: "a record is an object") }
        var fields: [String: JSONValue] = [:]
        for (name, member) in members { fields[name] = member }
        func string(_ name: String) -> String? {
            if case .string(let text)? = fields[name] { return text }
            return nil
        }
        func number(_ name: String) -> UInt64? {
            if case .number(let text)? = fields[name] { return UInt64(text) }
            return nil
        }
        switch string("type") {
        case "message":
            var payload = ByteBuffer()
            if let text = string("data") {
                payload = ByteBuffer(string: text)
            } else if let text = string("data_b64") {
                guard Base64.decode(text.utf8, into: &payload) else { throw JSONError(offset: 0, reason: "bad data_b64") }
            }
            var headers: [MessageHeader] = []
            if case .object(let pairs)? = fields["headers"] {
                for (name, value) in pairs {
                    if case .string(let text) = value { headers.append(MessageHeader(name: name, value: text)) }
                }
            }
            return .message(
                DeliveredMessage(
                    topic: string("topic") ?? "", id: string("id") ?? "",
                    delivery: string("delivery").flatMap { DeliveryLevel(name: $0) } ?? .fifo,
                    headers: headers, payload: payload, queue: string("queue"), redelivered: fields["redelivered"] == .bool(true)))
        case "view":
            var members: [String] = []
            if case .array(let values)? = fields["members"] {
                for case .string(let member) in values { members.append(member) }
            }
            var primary = true
            if case .bool(let flag)? = fields["primary"] { primary = flag }
            return .control(.view(group: string("group") ?? "", view: number("view") ?? 0, members: members, primary: primary))
        case "gap":
            return .control(.gap(lost: number("lost") ?? 0, reason: string("reason") ?? ""))
        case "heartbeat":
            return .control(.heartbeat)
        case "end":
            return .control(.end(reason: string("reason") ?? ""))
        default:
            throw JSONError(offset: 0, reason: "unknown record type")
        }
    }
}
