import NIOCore

// Hand-written JSON for the record formats: the server writes records straight
// into the outgoing ByteBuffer (no Codable, no intermediate String), and
// parses publish records with a small parser bounded by the line it is given.

extension ByteBuffer {
    /// Writes `"…"` with the JSON escapes of RFC 8259 §7 for UTF-8 `bytes`.
    /// The caller guarantees the bytes are valid UTF-8.
    @inlinable
    public mutating func writeJSONString(utf8 bytes: UnsafeRawBufferPointer) {
        writeInteger(UInt8(ascii: "\""))
        var runStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte != 0xC2 && byte != 0xE2 {
                index += 1
                continue
            }
            // C1 controls (U+0080–U+009F, NEL among them) and U+2028/U+2029
            // are valid in JSON but break lines for Unicode-aware splitters
            // (Python's splitlines, older JavaScript): escaped, so every
            // NDJSON record stays on its line.
            var escape: UInt16?
            if byte == 0xC2 {
                if index + 1 < count, (0x80...0x9F).contains(bytes[index + 1]) { escape = UInt16(bytes[index + 1]) }
            } else if byte == 0xE2 {
                if index + 2 < count, bytes[index + 1] == 0x80, bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9 {
                    escape = 0x2000 | UInt16(bytes[index + 2] - 0x80)
                }
            }
            if byte >= 0x80 {
                guard let escape else {
                    index += 1
                    continue
                }
                if runStart < index { writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])) }
                writeStaticString("\\u")
                let hex: StaticString = "0123456789abcdef"
                writeInteger(hex.utf8Start[Int(escape >> 12)])
                writeInteger(hex.utf8Start[Int((escape >> 8) & 0xF)])
                writeInteger(hex.utf8Start[Int((escape >> 4) & 0xF)])
                writeInteger(hex.utf8Start[Int(escape & 0xF)])
                index += escape < 0x100 ? 2 : 3
                runStart = index
                continue
            }
            if runStart < index { writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])) }
            switch byte {
            case UInt8(ascii: "\""): writeStaticString("\\\"")
            case UInt8(ascii: "\\"): writeStaticString("\\\\")
            case UInt8(ascii: "\n"): writeStaticString("\\n")
            case UInt8(ascii: "\r"): writeStaticString("\\r")
            case UInt8(ascii: "\t"): writeStaticString("\\t")
            default:
                writeStaticString("\\u00")
                let hex: StaticString = "0123456789abcdef"
                writeInteger(hex.utf8Start[Int(byte >> 4)])
                writeInteger(hex.utf8Start[Int(byte & 0xF)])
            }
            index += 1
            runStart = index
        }
        if runStart < count { writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<count])) }
        writeInteger(UInt8(ascii: "\""))
    }

    /// Writes a Swift string as a JSON string.
    @inlinable
    public mutating func writeJSONString(_ string: String) {
        var string = string
        string.withUTF8 { writeJSONString(utf8: UnsafeRawBufferPointer($0)) }
    }
}

/// A JSON value as the publish records need it: strings, objects of strings,
/// and anything else kept only as "present".
public enum JSONValue: Sendable, Equatable {
    case string(String)
    case object([(String, JSONValue)])
    case number(String)
    case bool(Bool)
    case null
    case array([JSONValue])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public var typeName: String {
        switch self {
        case .string: return "a string"
        case .object: return "an object"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        case .array: return "an array"
        }
    }
}

/// Why a JSON text was rejected, with the byte offset.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "malformed JSON at byte \(offset + 1): \(reason)" }
}

/// A strict RFC 8259 parser over one bounded buffer, nesting depth bounded.
public struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private let depthMax = 16

    /// Parses one complete JSON value; trailing whitespace only.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.index != bytes.count { throw parser.error("unexpected data after the value") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func error(_ reason: String) -> JSONError { JSONError(offset: index, reason: reason) }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected character")
        }
    }

    private mutating func expect(_ word: StaticString) throws(JSONError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end of input") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw error("unexpected character")
        }
        index += count
    }

    private mutating func parseNumber() throws(JSONError) -> String {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        var digits = 0
        while index < bytes.count {
            let byte = bytes[index]
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+")
                || (byte == UInt8(ascii: "-") && index > start)
            {
                index += 1
                digits += 1
            } else {
                break
            }
        }
        if digits == 0 { throw error("a number needs digits") }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        if depth > depthMax { throw error("nested deeper than \(depthMax) levels") }
        index += 1
        var values: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(values)
        }
        while true {
            skipWhitespace()
            values.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(values) }
            throw error("expected , or ] in an array")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
        if depth > depthMax { throw error("nested deeper than \(depthMax) levels") }
        index += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw error("expected a member name in quotes")
            }
            let name = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected : after a member name") }
            index += 1
            skipWhitespace()
            members.append((name, try parseValue(depth: depth)))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            throw error("expected , or } in an object")
        }
    }

    private mutating func parseString() throws(JSONError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                index += 1
                guard let string = String(validating: slice, as: UTF8.self) else {
                    throw JSONError(offset: start, reason: "string is not valid UTF-8")
                }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in a string") }
            index += 1
        }
        var scalars = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<min(index, bytes.count)]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let string = String(validating: scalars, as: UTF8.self) else {
                    throw JSONError(offset: start, reason: "string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw error("unexpected end of input in a string") }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""): scalars.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): scalars.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): scalars.append(UInt8(ascii: "/"))
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in a \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in a \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw error("unpaired surrogate in a \\u escape")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    scalars.append(contentsOf: UTF8.encode(scalar)!)
                default:
                    throw error("invalid escape")
                }
            default:
                if byte < 0x20 { throw error("control character in a string") }
                scalars.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in a \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}
