import NIOCore

/// A record of a lock stream (`POST /v1/locks/{name}`, docs/protocol.md,
/// "Locks"), in the subscribe stream's formats: one JSON object per line
/// (NDJSON), the same JSON in an SSE event named by `type`, or a binary
/// `event` frame.
public enum LockRecord: Sendable, Equatable {
    /// Queued; `position` 1 is next in line. Sent again when it changes.
    case waiting(lock: String, position: Int)
    /// Held, with its fencing token.
    case granted(lock: String, token: UInt64)
    /// Released by `DELETE /v1/locks/{name}?token=N`; the stream ends.
    case released(lock: String, token: UInt64)
    /// The request lost its place or the lock it held (`token` when it held
    /// it); the stream ends.
    case lost(lock: String, token: UInt64?, reason: String)
    /// Nothing happened for a while; the stream is alive.
    case heartbeat

    public var typeName: String {
        switch self {
        case .waiting: "waiting"
        case .granted: "granted"
        case .released: "released"
        case .lost: "lost"
        case .heartbeat: "heartbeat"
        }
    }

    /// Whether the stream ends after this record.
    public var isFinal: Bool {
        switch self {
        case .released, .lost: true
        default: false
        }
    }
}

extension RecordEncoder {
    /// Appends one lock record in `format`.
    public static func writeLock(_ record: LockRecord, format: StreamFormat, into out: inout ByteBuffer) {
        switch format {
        case .binary:
            let lengthIndex = out.beginFrame(.event)
            writeLockJSON(record, into: &out)
            out.endFrame(at: lengthIndex)
        case .ndjson:
            writeLockJSON(record, into: &out)
            out.writeInteger(UInt8(ascii: "\n"))
        case .sse:
            out.writeStaticString("event: ")
            out.writeString(record.typeName)
            out.writeStaticString("\ndata: ")
            writeLockJSON(record, into: &out)
            out.writeStaticString("\n\n")
        }
    }

    public static func writeLockJSON(_ record: LockRecord, into out: inout ByteBuffer) {
        out.writeStaticString("{\"type\":\"")
        out.writeString(record.typeName)
        out.writeInteger(UInt8(ascii: "\""))
        switch record {
        case .waiting(let lock, let position):
            out.writeStaticString(",\"lock\":")
            out.writeJSONString(lock)
            out.writeStaticString(",\"position\":")
            out.writeDecimal(UInt64(position))
        case .granted(let lock, let token), .released(let lock, let token):
            out.writeStaticString(",\"lock\":")
            out.writeJSONString(lock)
            out.writeStaticString(",\"token\":")
            out.writeDecimal(token)
        case .lost(let lock, let token, let reason):
            out.writeStaticString(",\"lock\":")
            out.writeJSONString(lock)
            if let token {
                out.writeStaticString(",\"token\":")
                out.writeDecimal(token)
            }
            out.writeStaticString(",\"reason\":")
            out.writeJSONString(reason)
        case .heartbeat:
            break
        }
        out.writeInteger(UInt8(ascii: "}"))
    }
}
