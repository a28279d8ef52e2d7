import PiglixTopics
import NIOCore

/// One message a client asks to publish, from either input format.
public struct PublishRecord: Sendable {
    public var topic: String
    public var payload: ByteBuffer
    public var delivery: DeliveryLevel
    public var headers: [MessageHeader]
    /// Idempotent publish (docs/patterns.md): the publisher's name and this
    /// record's number; nil and 0 for an ordinary record.
    public var producer: String?
    public var sequence: UInt64

    public init(
        topic: String, payload: ByteBuffer, delivery: DeliveryLevel = .fifo, headers: [MessageHeader] = [], producer: String? = nil,
        sequence: UInt64 = 0
    ) {
        self.topic = topic
        self.payload = payload
        self.delivery = delivery
        self.headers = headers
        self.producer = producer
        self.sequence = sequence
    }
}

/// The rules for `Piglix-Producer` and `Piglix-Sequence` (docs/protocol.md,
/// "Idempotent publish"), shared by every input format.
public enum Idempotence {
    /// Most bytes of a producer name.
    public static let producerBytesMax = 64

    /// Refuses a producer name that is not 1 to 64 bytes of `[A-Za-z0-9._:-]`.
    public static func check(producer: String) throws(RecordError) {
        let bytes = producer.utf8
        guard !bytes.isEmpty, bytes.count <= producerBytesMax else {
            throw RecordError("Piglix-Producer must be 1 to \(producerBytesMax) bytes, not \(bytes.count)")
        }
        for b in bytes {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"):
                continue
            default:
                throw RecordError("Piglix-Producer \"\(producer.prefix(80))\" may hold only letters, digits and . _ : -")
            }
        }
    }

    /// Parses a sequence number: decimal digits, 1 to 2^64-1.
    public static func sequence(_ text: Substring) throws(RecordError) -> UInt64 {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let value = UInt64(text),
            value >= 1
        else {
            throw RecordError("Piglix-Sequence \"\(text.prefix(40))\" must be a decimal integer from 1 to 18446744073709551615")
        }
        return value
    }

    /// Both or neither: one alone is an error.
    public static func pair(producer: String?, sequence: UInt64?) throws(RecordError) -> (String?, UInt64) {
        switch (producer, sequence) {
        case (nil, nil): return (nil, 0)
        case (let p?, let s?):
            try check(producer: p)
            return (p, s)
        case (nil, _): throw RecordError("Piglix-Sequence needs Piglix-Producer: give both or neither")
        case (_, nil): throw RecordError("Piglix-Producer needs Piglix-Sequence: give both or neither")
        }
    }
}

/// Bits of a publish frame's first byte above the delivery level.
public enum PublishFrameFlags {
    /// The frame carries `string producer` and `u64 sequence` after its
    /// headers (idempotent publish).
    public static let idempotent: UInt8 = 0x80
}

/// Why a publish record was rejected; the text goes into its error ack.
public struct RecordError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var reason: String
    public init(status: Int = 400, _ reason: String) {
        self.status = status
        self.reason = reason
    }
    public var description: String { reason }
}

/// Bounds on user headers, shared by both input formats.
public struct HeaderLimits: Sendable, Hashable {
    public var countMax: Int
    public var nameBytesMax: Int
    public var valueBytesMax: Int
    public init(countMax: Int = 32, nameBytesMax: Int = 64, valueBytesMax: Int = 1024) {
        self.countMax = countMax
        self.nameBytesMax = nameBytesMax
        self.valueBytesMax = valueBytesMax
    }
    public static let `default` = HeaderLimits()

    /// Refuses headers over the limits (count, name and value bytes).
    public func check(_ headers: [MessageHeader]) throws(RecordError) {
        if headers.count > countMax { throw RecordError("\(headers.count) headers, the limit is \(countMax)") }
        for header in headers {
            if header.name.isEmpty || header.name.utf8.count > nameBytesMax {
                throw RecordError("header name \"\(header.name.prefix(80))\" must be 1 to \(nameBytesMax) bytes")
            }
            if header.value.utf8.count > valueBytesMax {
                throw RecordError("header \"\(header.name)\" has a value over \(valueBytesMax) bytes")
            }
        }
    }
}

extension PublishRecord {
    /// Parses one NDJSON publish line:
    /// `{"topic":"a.b","data":"text"|"data_b64":"…","delivery":"fifo","headers":{"k":"v"}}`.
    public static func decodeJSON(_ line: ByteBuffer, headerLimits: HeaderLimits = .default) throws(RecordError) -> PublishRecord {
        let parsed: JSONValue
        do {
            parsed = try line.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        } catch {
            throw RecordError(error.description)
        }
        guard case .object(let members) = parsed else {
            throw RecordError("a publish record is a JSON object, not \(parsed.typeName)")
        }
        var topic: String?
        var payload: ByteBuffer?
        var delivery = DeliveryLevel.fifo
        var headers: [MessageHeader] = []
        var producer: String?
        var sequence: UInt64?
        for (name, value) in members {
            switch name {
            case "producer", "Piglix-Producer":
                guard producer == nil else { throw RecordError("give one of \"producer\" and \"Piglix-Producer\", once") }
                guard case .string(let text) = value else { throw RecordError("\"\(name)\" must be a string, not \(value.typeName)") }
                producer = text
            case "sequence", "Piglix-Sequence":
                guard sequence == nil else { throw RecordError("give one of \"sequence\" and \"Piglix-Sequence\", once") }
                switch value {
                case .number(let text), .string(let text): sequence = try Idempotence.sequence(Substring(text))
                default: throw RecordError("\"\(name)\" must be a number or a string of digits, not \(value.typeName)")
                }
            case "topic":
                guard case .string(let text) = value else { throw RecordError("\"topic\" must be a string, not \(value.typeName)") }
                topic = text
            case "data":
                guard payload == nil else { throw RecordError("give one of \"data\" and \"data_b64\", not both") }
                guard case .string(let text) = value else { throw RecordError("\"data\" must be a string, not \(value.typeName)") }
                payload = ByteBuffer(string: text)
            case "data_b64":
                guard payload == nil else { throw RecordError("give one of \"data\" and \"data_b64\", not both") }
                guard case .string(let text) = value else { throw RecordError("\"data_b64\" must be a string, not \(value.typeName)") }
                var buffer = ByteBuffer()
                buffer.reserveCapacity(text.utf8.count / 4 * 3 + 3)
                guard Base64.decode(text.utf8, into: &buffer) else { throw RecordError("\"data_b64\" is not valid base64") }
                payload = buffer
            case "delivery":
                guard case .string(let text) = value, let level = DeliveryLevel(name: text) else {
                    throw RecordError("\"delivery\" must be \"fifo\", \"total\" or \"safe\"")
                }
                delivery = level
            case "headers":
                guard case .object(let pairs) = value else { throw RecordError("\"headers\" must be an object of strings") }
                for (headerName, headerValue) in pairs {
                    guard case .string(let text) = headerValue else {
                        throw RecordError("header \"\(headerName)\" must be a string, not \(headerValue.typeName)")
                    }
                    headers.append(MessageHeader(name: headerName, value: text))
                }
            default:
                throw RecordError(
                    "unknown field \"\(name)\"; a record has topic, data or data_b64, delivery, headers, producer, sequence")
            }
        }
        guard let topic else { throw RecordError("the record has no \"topic\"") }
        guard let payload else { throw RecordError("the record has neither \"data\" nor \"data_b64\"") }
        try headerLimits.check(headers)
        let (p, n) = try Idempotence.pair(producer: producer, sequence: sequence)
        return PublishRecord(topic: topic, payload: payload, delivery: delivery, headers: headers, producer: p, sequence: n)
    }

    /// Parses the body of a `publish` frame.
    public static func decodeFrame(_ body: ByteBuffer, headerLimits: HeaderLimits = .default) throws(RecordError) -> PublishRecord {
        var body = body
        guard let rawByte: UInt8 = body.readInteger() else { throw RecordError("short publish frame") }
        let rawLevel = rawByte & ~PublishFrameFlags.idempotent
        guard let delivery = DeliveryLevel(rawValue: rawLevel) else {
            throw RecordError("publish frame has unknown delivery level \(rawLevel)")
        }
        guard let topic = body.readShortString() else { throw RecordError("publish frame ends inside the topic") }
        guard let headerCount: UInt8 = body.readInteger() else { throw RecordError("publish frame ends before the header count") }
        var headers: [MessageHeader] = []
        if headerCount > 0 {
            headers.reserveCapacity(Int(headerCount))
            for _ in 0..<headerCount {
                guard let name = body.readShortString(), let value = body.readShortString() else {
                    throw RecordError("publish frame ends inside a header")
                }
                headers.append(MessageHeader(name: name, value: value))
            }
            try headerLimits.check(headers)
        }
        guard rawByte & PublishFrameFlags.idempotent != 0 else {
            return PublishRecord(topic: topic, payload: body, delivery: delivery, headers: headers)
        }
        guard let producer = body.readShortString() else { throw RecordError("publish frame ends inside the producer") }
        guard let sequence: UInt64 = body.readInteger() else { throw RecordError("publish frame ends inside the sequence") }
        try Idempotence.check(producer: producer)
        if sequence == 0 { throw RecordError("Piglix-Sequence must be from 1 to 18446744073709551615, not 0") }
        return PublishRecord(topic: topic, payload: body, delivery: delivery, headers: headers, producer: producer, sequence: sequence)
    }

    /// Appends this record as a `publish` frame.
    public func encodeFrame(into out: inout ByteBuffer) {
        // Header, topic and headers in one write, then the payload: the
        // length is patched at the end.
        var headerBytes = 0
        for header in headers { headerBytes += 4 + header.name.utf8.count + header.value.utf8.count }
        if let producer { headerBytes += 2 + producer.utf8.count + 8 }
        let lengthIndex = out.writerIndex + 1
        out.reserveCapacity(minimumWritableBytes: FrameHeader.size + 1 + 2 + topic.utf8.count + 1 + headerBytes + payload.readableBytes)
        let (topic, headers, producer, sequence) = (self.topic, self.headers, self.producer, self.sequence)
        let level = delivery.rawValue | (producer == nil ? 0 : PublishFrameFlags.idempotent)
        out.writeRaw(maxBytes: FrameHeader.size + 1 + 2 + topic.utf8.count + 1 + headerBytes) { writer in
            writer.byte(FrameType.publish.rawValue)
            writer.position &+= 4
            writer.byte(level)
            writer.shortString(topic)
            writer.byte(UInt8(truncatingIfNeeded: headers.count))
            for header in headers {
                writer.shortString(header.name)
                writer.shortString(header.value)
            }
            if let producer {
                writer.shortString(producer)
                for shift in stride(from: 56, through: 0, by: -8) { writer.byte(UInt8(truncatingIfNeeded: sequence >> UInt64(shift))) }
            }
        }
        var payload = payload
        out.writeBuffer(&payload)
        out.endFrame(at: lengthIndex)
    }

    /// Appends this record as an NDJSON line (text payloads as `data`, others as `data_b64`).
    public func encodeJSON(into out: inout ByteBuffer) {
        out.writeStaticString("{\"topic\":")
        out.writeJSONString(topic)
        if delivery != .fifo {
            out.writeStaticString(",\"delivery\":\"")
            out.writeString(delivery.name)
            out.writeInteger(UInt8(ascii: "\""))
        }
        if let producer {
            out.writeStaticString(",\"producer\":")
            out.writeJSONString(producer)
            out.writeStaticString(",\"sequence\":")
            out.writeString(String(sequence))
        }
        out.writeHeadersAndPayloadJSON(headers: headers, payload: payload, payloadIsText: UTF8Check.isValid(payload))
        out.writeStaticString("}\n")
    }
}

/// UTF-8 validation of payloads, to choose `data` or `data_b64`.
public enum UTF8Check {
    @inlinable
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index < count {
            // ASCII fast path, 8 bytes at a time.
            while index + 8 <= count, bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                index &+= 8
            }
            guard index < count else { return true }
            let lead = bytes[index]
            if lead < 0x80 {
                index &+= 1
                continue
            }
            // Validated in place (RFC 3629 table 3-7): no String is made.
            @inline(__always) func continuation(_ offset: Int) -> UInt8? {
                guard index + offset < count else { return nil }
                let byte = bytes[index + offset]
                return byte & 0xC0 == 0x80 ? byte : nil
            }
            switch lead {
            case 0xC2...0xDF:
                guard continuation(1) != nil else { return false }
                index &+= 2
            case 0xE0...0xEF:
                guard let second = continuation(1), continuation(2) != nil else { return false }
                if lead == 0xE0 && second < 0xA0 { return false }  // overlong
                if lead == 0xED && second > 0x9F { return false }  // surrogate
                index &+= 3
            case 0xF0...0xF4:
                guard let second = continuation(1), continuation(2) != nil, continuation(3) != nil else { return false }
                if lead == 0xF0 && second < 0x90 { return false }  // overlong
                if lead == 0xF4 && second > 0x8F { return false }  // over U+10FFFF
                index &+= 4
            default:
                return false
            }
        }
        return true
    }

    public static func isValid(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { isValid($0) }
    }
}
