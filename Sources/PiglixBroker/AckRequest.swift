import PiglixWire

/// The body of `POST /v1/ack` (docs/protocol.md, "Work queues"): one JSON
/// object `{"queue":"NAME","ids":["…",…]}`. Read here, apart from the
/// route, so the fuzz target `FuzzTables` reads it exactly as the route.
public struct AckRequest: Sendable, Equatable {
    public var queue: String
    public var ids: [String]

    /// Ids in one request.
    public static let idsMax = 1000
    /// Request body bytes (1,000 ids of up to ~200 bytes each).
    public static let bodyBytesMax = 256 << 10

    /// Why a body was refused: `tooLarge` is a `413`, the rest `400`.
    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        public var tooLarge = false
        public var description: String
    }

    public init(queue: String, ids: [String]) {
        self.queue = queue
        self.ids = ids
    }

    /// Reads a body: one object with a valid queue name and 1 to `idsMax`
    /// string ids, and no other field. The ids are not parsed here (an id
    /// that names no message is answered `unknown`).
    public init(parsing bytes: UnsafeRawBufferPointer) throws(Invalid) {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch { throw Invalid(description: "the body is not JSON: \(error)") }
        guard case .object(let members) = value else {
            throw Invalid(description: "the body is one JSON object {\"queue\":\"NAME\",\"ids\":[\"…\"]}")
        }
        var queue: String?
        var ids: [String]?
        for (name, member) in members {
            switch (name, member) {
            case ("queue", .string(let text)): queue = text
            case ("ids", .array(let values)):
                if values.count > Self.idsMax {
                    throw Invalid(tooLarge: true, description: "\(values.count) ids in one ack, the limit is \(Self.idsMax)")
                }
                var list: [String] = []
                for (i, v) in values.enumerated() {
                    guard case .string(let text) = v else { throw Invalid(description: "ids[\(i)] is not a string") }
                    list.append(text)
                }
                ids = list
            case ("queue", _): throw Invalid(description: "queue is not a string")
            case ("ids", _): throw Invalid(description: "ids is not an array of strings")
            default: throw Invalid(description: "unknown field \(name.prefix(64)); an ack has queue and ids")
            }
        }
        guard let queue else { throw Invalid(description: "missing queue") }
        guard let ids, !ids.isEmpty else { throw Invalid(description: "missing ids: give 1 to \(Self.idsMax) message ids") }
        do { try Broker.validateQueueName(queue) } catch { throw Invalid(description: "queue \(queue.prefix(140)): \(error.description)") }
        self.queue = queue
        self.ids = ids
    }
}
