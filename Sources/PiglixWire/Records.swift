import PiglixTopics
import NIOCore

/// One user header carried with a message.
public struct MessageHeader: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The three subscribe stream formats, chosen by `Accept`.
public enum StreamFormat: Sendable, Hashable, CustomStringConvertible {
    case ndjson
    case sse
    case binary

    public var contentType: String {
        switch self {
        case .ndjson: return "application/x-ndjson"
        case .sse: return "text/event-stream"
        case .binary: return binaryFramesMediaType
        }
    }

    public var description: String {
        switch self {
        case .ndjson: return "ndjson"
        case .sse: return "sse"
        case .binary: return "binary"
        }
    }
}

/// A control record of the subscribe stream (everything but a message).
public enum ControlRecord: Sendable, Equatable {
    /// A subscribed group's view changed (or is announced at subscribe time).
    case view(group: String, view: UInt64, members: [String], primary: Bool)
    /// `lost` messages were dropped for this subscription.
    case gap(lost: UInt64, reason: String)
    /// Nothing happened for a while; the stream is alive.
    case heartbeat
    /// The server ends the stream; `reason` says why.
    case end(reason: String)

    public var typeName: String {
        switch self {
        case .view: return "view"
        case .gap: return "gap"
        case .heartbeat: return "heartbeat"
        case .end: return "end"
        }
    }
}

extension ByteBuffer {
    /// The tail shared by message and publish records:
    /// `,"headers":{…}` when there are any, then `,"data":"…"` for UTF-8
    /// payloads or `,"data_b64":"…"` for others.
    @inlinable
    public mutating func writeHeadersAndPayloadJSON(headers: [MessageHeader], payload: ByteBuffer, payloadIsText: Bool) {
        if !headers.isEmpty {
            writeStaticString(",\"headers\":{")
            for (index, header) in headers.enumerated() {
                if index > 0 { writeInteger(UInt8(ascii: ",")) }
                writeJSONString(header.name)
                writeInteger(UInt8(ascii: ":"))
                writeJSONString(header.value)
            }
            writeInteger(UInt8(ascii: "}"))
        }
        payload.withUnsafeReadableBytes { bytes in
            if payloadIsText {
                writeStaticString(",\"data\":")
                writeJSONString(utf8: bytes)
            } else {
                writeStaticString(",\"data_b64\":\"")
                Base64.encode(bytes, into: &self)
                writeInteger(UInt8(ascii: "\""))
            }
        }
    }
}

/// Writes subscribe-stream records in any of the three formats.
public enum RecordEncoder {
    /// Appends one message record.
    @inlinable
    public static func writeMessage(
        format: StreamFormat,
        topic: String,
        id: MessageID,
        delivery: DeliveryLevel,
        headers: [MessageHeader],
        payload: ByteBuffer,
        payloadIsText: Bool,
        into out: inout ByteBuffer
    ) {
        switch format {
        case .binary:
            let lengthIndex: Int
            if id.position == nil {
                // The common case in one write: type, length (patched below),
                // level, topic, id, header count, headers. The closure
                // captures plain values, not the id (swift 6.x's ownership
                // verifier trips over a borrowed id in it once inlined).
                let (epoch, sequence, level) = (id.epoch, id.sequence, delivery.rawValue)
                var headerBytes = 0
                for header in headers { headerBytes += 4 + header.name.utf8.count + header.value.utf8.count }
                lengthIndex = out.writerIndex + 1
                out.writeRaw(maxBytes: FrameHeader.size + 1 + 2 + topic.utf8.count + 31 + 1 + headerBytes) { writer in
                    writer.byte(FrameType.message.rawValue)
                    writer.position &+= 4
                    writer.byte(level)
                    writer.shortString(topic)
                    writer.shortMessageID(epoch: epoch, sequence: sequence)
                    writer.byte(UInt8(truncatingIfNeeded: headers.count))
                    for header in headers {
                        writer.shortString(header.name)
                        writer.shortString(header.value)
                    }
                }
            } else {
                lengthIndex = out.beginFrame(.message)
                out.writeInteger(delivery.rawValue)
                out.writeShortString(topic)
                out.writeInteger(UInt16(ByteBuffer.messageIDLength(id)))
                out.writeMessageID(id)
                out.writeInteger(UInt8(truncatingIfNeeded: headers.count))
                for header in headers {
                    out.writeShortString(header.name)
                    out.writeShortString(header.value)
                }
            }
            var payload = payload
            out.writeBuffer(&payload)
            out.endFrame(at: lengthIndex)
        case .ndjson:
            writeMessageJSON(topic: topic, id: id, delivery: delivery, headers: headers, payload: payload, payloadIsText: payloadIsText, into: &out)
            out.writeInteger(UInt8(ascii: "\n"))
        case .sse:
            out.writeStaticString("event: message\nid: ")
            out.writeMessageID(id)
            out.writeStaticString("\ndata: ")
            writeMessageJSON(topic: topic, id: id, delivery: delivery, headers: headers, payload: payload, payloadIsText: payloadIsText, into: &out)
            out.writeStaticString("\n\n")
        }
    }

    @inlinable
    static func writeMessageJSON(
        topic: String, id: MessageID, delivery: DeliveryLevel, headers: [MessageHeader],
        payload: ByteBuffer, payloadIsText: Bool, into out: inout ByteBuffer
    ) {
        out.writeStaticString("{\"type\":\"message\",\"topic\":")
        out.writeJSONString(topic)
        out.writeStaticString(",\"id\":\"")
        out.writeMessageID(id)
        out.writeStaticString("\",\"delivery\":\"")
        out.writeString(delivery.name)
        out.writeInteger(UInt8(ascii: "\""))
        out.writeHeadersAndPayloadJSON(headers: headers, payload: payload, payloadIsText: payloadIsText)
        out.writeInteger(UInt8(ascii: "}"))
    }

    /// Appends one record of a work queue stream (docs/patterns.md, "Work
    /// queues"): a `message` record with `"queue":NAME` and, for a
    /// redelivery, `"redelivered":true`. NDJSON and SSE carry it like a
    /// message; the binary format carries the same JSON in an `event` frame
    /// (its `message` frame has no room for the two fields).
    public static func writeQueueMessage(
        format: StreamFormat, queue: String, redelivered: Bool, topic: String, id: MessageID, delivery: DeliveryLevel,
        headers: [MessageHeader], payload: ByteBuffer, payloadIsText: Bool, into out: inout ByteBuffer
    ) {
        func json(_ out: inout ByteBuffer) {
            out.writeStaticString("{\"type\":\"message\",\"topic\":")
            out.writeJSONString(topic)
            out.writeStaticString(",\"id\":\"")
            out.writeMessageID(id)
            out.writeStaticString("\",\"delivery\":\"")
            out.writeString(delivery.name)
            out.writeStaticString("\",\"queue\":")
            out.writeJSONString(queue)
            if redelivered { out.writeStaticString(",\"redelivered\":true") }
            out.writeHeadersAndPayloadJSON(headers: headers, payload: payload, payloadIsText: payloadIsText)
            out.writeInteger(UInt8(ascii: "}"))
        }
        switch format {
        case .binary:
            let lengthIndex = out.beginFrame(.event)
            json(&out)
            out.endFrame(at: lengthIndex)
        case .ndjson:
            json(&out)
            out.writeInteger(UInt8(ascii: "\n"))
        case .sse:
            out.writeStaticString("event: message\nid: ")
            out.writeMessageID(id)
            out.writeStaticString("\ndata: ")
            json(&out)
            out.writeStaticString("\n\n")
        }
    }

    /// Appends one control record.
    public static func writeControl(_ record: ControlRecord, format: StreamFormat, into out: inout ByteBuffer) {
        switch format {
        case .binary:
            let lengthIndex = out.beginFrame(.event)
            writeControlJSON(record, into: &out)
            out.endFrame(at: lengthIndex)
        case .ndjson:
            writeControlJSON(record, into: &out)
            out.writeInteger(UInt8(ascii: "\n"))
        case .sse:
            out.writeStaticString("event: ")
            out.writeString(record.typeName)
            out.writeStaticString("\ndata: ")
            writeControlJSON(record, into: &out)
            out.writeStaticString("\n\n")
        }
    }

    /// The JSON object of a control record, without newline.
    public static func writeControlJSON(_ record: ControlRecord, into out: inout ByteBuffer) {
        switch record {
        case .view(let group, let view, let members, let primary):
            out.writeStaticString("{\"type\":\"view\",\"group\":")
            out.writeJSONString(group)
            out.writeStaticString(",\"view\":")
            out.writeDecimal(view)
            out.writeStaticString(",\"members\":[")
            for (index, member) in members.enumerated() {
                if index > 0 { out.writeInteger(UInt8(ascii: ",")) }
                out.writeJSONString(member)
            }
            out.writeStaticString("],\"primary\":")
            out.writeString(primary ? "true" : "false")
            out.writeInteger(UInt8(ascii: "}"))
        case .gap(let lost, let reason):
            out.writeStaticString("{\"type\":\"gap\",\"lost\":")
            out.writeDecimal(lost)
            out.writeStaticString(",\"reason\":")
            out.writeJSONString(reason)
            out.writeInteger(UInt8(ascii: "}"))
        case .heartbeat:
            out.writeStaticString("{\"type\":\"heartbeat\"}")
        case .end(let reason):
            out.writeStaticString("{\"type\":\"end\",\"reason\":")
            out.writeJSONString(reason)
            out.writeInteger(UInt8(ascii: "}"))
        }
    }
}

/// The outcome of one publish record, as the ack stream reports it.
public struct PublishAck: Sendable, Equatable {
    /// 200 (safe, stable) or 202 (accepted) when ok, else the HTTP-like status of the error.
    public var status: Int
    public var id: String?
    public var delivery: DeliveryLevel?
    public var error: String?

    public var ok: Bool { status < 300 }

    public init(status: Int, id: String? = nil, delivery: DeliveryLevel? = nil, error: String? = nil) {
        self.status = status
        self.id = id
        self.delivery = delivery
        self.error = error
    }
}

/// Writes and reads publish acks: NDJSON for NDJSON input, frames for frames.
public enum AckCodec {
    /// Appends the ack of an accepted record without building strings.
    @inlinable
    public static func writeOK(id: MessageID, delivery: DeliveryLevel, status: Int, binary: Bool, into out: inout ByteBuffer) {
        if binary, id.position == nil {
            // One write: type, length, status, id, level, empty error; the
            // closure captures plain values only (see writeMessage).
            let (epoch, sequence, level, status) = (id.epoch, id.sequence, delivery.rawValue, UInt16(status))
            out.writeRaw(maxBytes: FrameHeader.size + 2 + 31 + 1 + 2) { writer in
                writer.byte(FrameType.ack.rawValue)
                writer.position &+= 4
                writer.uint16(status)
                writer.shortMessageID(epoch: epoch, sequence: sequence)
                writer.byte(level)
                writer.uint16(0)
                writer.bytes.storeBytes(of: UInt32(writer.position - FrameHeader.size).bigEndian, toByteOffset: 1, as: UInt32.self)
            }
        } else if binary {
            let lengthIndex = out.beginFrame(.ack)
            out.writeInteger(UInt16(status))
            out.writeInteger(UInt16(ByteBuffer.messageIDLength(id)))
            out.writeMessageID(id)
            out.writeInteger(delivery.rawValue)
            out.writeInteger(UInt16(0))
            out.endFrame(at: lengthIndex)
        } else {
            out.writeStaticString("{\"ok\":true,\"id\":\"")
            out.writeMessageID(id)
            out.writeStaticString("\",\"delivery\":\"")
            out.writeString(delivery.name)
            out.writeStaticString("\"}\n")
        }
    }

    /// Appends the ack of a rejected record.
    public static func writeError(status: Int, error: String, binary: Bool, into out: inout ByteBuffer) {
        if binary {
            let lengthIndex = out.beginFrame(.ack)
            out.writeInteger(UInt16(status))
            out.writeInteger(UInt16(0))
            out.writeInteger(UInt8(0xFF))
            out.writeShortString(error)
            out.endFrame(at: lengthIndex)
        } else {
            out.writeStaticString("{\"ok\":false,\"status\":")
            out.writeDecimal(UInt64(status))
            out.writeStaticString(",\"error\":")
            out.writeJSONString(error)
            out.writeStaticString("}\n")
        }
    }

    /// Reads only the status of an ack frame body (what counting needs).
    public static func decodeFrameStatus(_ body: ByteBuffer) throws(FrameError) -> Int {
        // status u16, id length u16, level u8, error length u16 at the least.
        guard body.readableBytes >= 7, let status: UInt16 = body.getInteger(at: body.readerIndex) else {
            throw .malformed("short ack frame")
        }
        return Int(status)
    }

    /// Reads an ack frame body.
    public static func decodeFrame(_ body: ByteBuffer) throws(FrameError) -> PublishAck {
        var body = body
        guard let status: UInt16 = body.readInteger(), let id = body.readShortString(),
            let level: UInt8 = body.readInteger(), let error = body.readShortString()
        else { throw .malformed("short ack frame") }
        return PublishAck(
            status: Int(status), id: id.isEmpty ? nil : id, delivery: DeliveryLevel(rawValue: level),
            error: error.isEmpty ? nil : error)
    }

    /// Reads an NDJSON ack line.
    public static func decodeJSON(_ line: ByteBuffer) throws -> PublishAck {
        let value = try line.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        guard case .object(let members) = value else { throw JSONError(offset: 0, reason: "an ack is an object") }
        var ack = PublishAck(status: 0)
        var ok = false
        for (name, member) in members {
            switch (name, member) {
            case ("ok", .bool(let flag)): ok = flag
            case ("id", .string(let id)): ack.id = id
            case ("delivery", .string(let level)): ack.delivery = DeliveryLevel(name: level)
            case ("status", .number(let status)): ack.status = Int(status) ?? 0
            case ("error", .string(let error)): ack.error = error
            default: break
            }
        }
        if ok && ack.status == 0 { ack.status = (ack.delivery ?? .fifo).ackStatus }
        return ack
    }
}
