import HTTPTypes
import Hummingbird
import NIOCore
import PiglixBroker
import PiglixGroups
import PiglixWire

/// `POST /v1/ack`: acknowledges work queue messages (docs/patterns.md,
/// "Work queues"). Body: one JSON object `{"queue":"NAME","ids":["…",…]}`
/// (`application/json`; NDJSON is not accepted: one request acks up to
/// `idsMax` ids already). The answer names, per id in request order,
/// whether this ack removed it (`acked`) or it was not unacked in the
/// queue (`unknown`: never queued, or acked already).
struct AckRoute: Sendable {
    let broker: Broker

    /// Ids in one request.
    static let idsMax = 1000
    /// Request body bytes (1,000 ids of up to ~200 bytes each).
    static let bodyBytesMax = 256 << 10

    func handle(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: Self.bodyBytesMax)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "an ack body is at most \(Self.bodyBytesMax) bytes")
        } catch is NIOTooManyBytesError {
            throw Problem(.contentTooLarge, "an ack body is at most \(Self.bodyBytesMax) bytes")
        }
        let value: JSONValue
        do {
            value = try body.withUnsafeReadableBytes { bytes throws(JSONError) in try JSONParser.parse(bytes) }
        } catch {
            throw Problem(.badRequest, "the body is not JSON: \(error)")
        }
        guard case .object(let members) = value else {
            throw Problem(.badRequest, "the body is one JSON object {\"queue\":\"NAME\",\"ids\":[\"…\"]}")
        }
        var queue: String?
        var ids: [String]?
        for (name, member) in members {
            switch (name, member) {
            case ("queue", .string(let text)): queue = text
            case ("ids", .array(let values)):
                if values.count > Self.idsMax {
                    throw Problem(.contentTooLarge, "\(values.count) ids in one ack, the limit is \(Self.idsMax)")
                }
                var list: [String] = []
                for (i, v) in values.enumerated() {
                    guard case .string(let text) = v else { throw Problem(.badRequest, "ids[\(i)] is not a string") }
                    list.append(text)
                }
                ids = list
            case ("queue", _): throw Problem(.badRequest, "queue is not a string")
            case ("ids", _): throw Problem(.badRequest, "ids is not an array of strings")
            default: throw Problem(.badRequest, "unknown field \(name.prefix(64)); an ack has queue and ids")
            }
        }
        guard let queue else { throw Problem(.badRequest, "missing queue") }
        guard let ids, !ids.isEmpty else { throw Problem(.badRequest, "missing ids: give 1 to \(Self.idsMax) message ids") }
        do { try Broker.validateQueueName(queue) } catch { throw Problem(.badRequest, "queue \(queue.prefix(140)): \(error.description)") }
        if let access = context.access, let pattern = broker.queuePattern(of: queue) { try access.checkSubscribe([pattern]) }

        let results: [QueueAckResult]
        do { results = try await broker.ack(queue: queue, ids: ids) } catch {
            throw Problem(Problem.status(error.status), error.description, headers: error.status == 503 ? [.retryAfter: "1"] : [:])
        }
        var out = ByteBuffer()
        out.writeStaticString("{\"queue\":")
        out.writeJSONString(queue)
        out.writeStaticString(",\"results\":[")
        var acked = 0
        for (i, (id, result)) in zip(ids, results).enumerated() {
            if i > 0 { out.writeInteger(UInt8(ascii: ",")) }
            out.writeStaticString("{\"id\":")
            out.writeJSONString(id)
            switch result {
            case .acked:
                acked += 1
                out.writeStaticString(",\"result\":\"acked\"}")
            case .unknown: out.writeStaticString(",\"result\":\"unknown\"}")
            }
        }
        out.writeStaticString("],\"acked\":")
        out.writeDecimal(UInt64(acked))
        out.writeStaticString("}\n")
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: out))
    }
}
