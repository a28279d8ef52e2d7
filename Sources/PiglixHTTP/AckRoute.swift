import HTTPTypes
import Hummingbird
import NIOCore
import PiglixBroker
import PiglixGroups
import PiglixWire

/// `POST /v1/ack`: acknowledges work queue messages (docs/patterns.md,
/// "Work queues"). Body: one JSON object `{"queue":"NAME","ids":["…",…]}`
/// (`application/json`; NDJSON is not accepted: one request acks up to
/// `AckRequest.idsMax` ids already), read by `AckRequest`. The answer names, per id in request order,
/// whether this ack removed it (`acked`) or it was not unacked in the
/// queue (`unknown`: never queued, or acked already).
struct AckRoute: Sendable {
    let broker: Broker

    func handle(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: AckRequest.bodyBytesMax)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "an ack body is at most \(AckRequest.bodyBytesMax) bytes")
        } catch is NIOTooManyBytesError {
            throw Problem(.contentTooLarge, "an ack body is at most \(AckRequest.bodyBytesMax) bytes")
        }
        let ack: AckRequest
        do { ack = try body.withUnsafeReadableBytes { bytes throws(AckRequest.Invalid) in try AckRequest(parsing: bytes) } } catch {
            throw Problem(error.tooLarge ? .contentTooLarge : .badRequest, error.description)
        }
        let (queue, ids) = (ack.queue, ack.ids)
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
