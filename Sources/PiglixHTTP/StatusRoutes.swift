import HTTPTypes
import Hummingbird
import NIOCore
import PiglixBroker
import PiglixWire
import Prometheus

/// `/v1/cluster`, `/v1/groups`, `/healthz`, `/readyz`, `/metrics`.
struct StatusRoutes: Sendable {
    let broker: Broker
    let registry: PrometheusCollectorRegistry

    /// A single node is its own one-member primary view.
    var isPrimary: Bool { true }

    func cluster(_ request: Request, context: some RequestContext) -> Response {
        var body = ByteBuffer()
        body.writeStaticString("{\"node\":")
        body.writeJSONString(broker.settings.nodeID)
        body.writeStaticString(",\"incarnation\":")
        body.writeDecimal(UInt64(broker.epoch))
        body.writeStaticString(",\"view\":")
        body.writeDecimal(broker.viewID)
        body.writeStaticString(",\"members\":[")
        body.writeJSONString(broker.settings.nodeID)
        body.writeStaticString("],\"coordinator\":")
        body.writeJSONString(broker.settings.nodeID)
        body.writeStaticString(",\"primary\":")
        body.writeString(isPrimary ? "true" : "false")
        body.writeStaticString(",\"clustered\":false}\n")
        return json(body)
    }

    func groups(_ request: Request, context: some RequestContext) -> Response {
        var body = ByteBuffer()
        body.writeStaticString("{\"groups\":[")
        for (index, group) in broker.groups.enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeStaticString("{\"group\":")
            body.writeJSONString(group.pattern)
            body.writeStaticString(",\"view\":")
            body.writeDecimal(group.view)
            body.writeStaticString(",\"members\":[")
            for (memberIndex, member) in group.members.enumerated() {
                if memberIndex > 0 { body.writeInteger(UInt8(ascii: ",")) }
                body.writeJSONString(member)
            }
            body.writeStaticString("],\"local_subscribers\":")
            body.writeDecimal(UInt64(group.localSubscribers))
            body.writeStaticString(",\"delivered\":")
            body.writeDecimal(group.delivered)
            body.writeInteger(UInt8(ascii: "}"))
        }
        body.writeStaticString("]}\n")
        return json(body)
    }

    func healthz(_ request: Request, context: some RequestContext) -> Response {
        json(ByteBuffer(string: "{\"status\":\"ok\"}\n"))
    }

    func readyz(_ request: Request, context: some RequestContext) -> Response {
        if broker.isShuttingDown {
            return Problem(.serviceUnavailable, "shutting down", headers: [.retryAfter: "1"]).response()
        }
        guard isPrimary else {
            return Problem(.serviceUnavailable, "not in the primary component", headers: [.retryAfter: "1"]).response()
        }
        return json(ByteBuffer(string: "{\"status\":\"ready\",\"primary\":true}\n"))
    }

    func metrics(_ request: Request, context: some RequestContext) -> Response {
        var text = registry.emitToString()
        let stats = broker.stats
        func line(_ name: String, _ type: String, _ help: String, _ value: some BinaryInteger) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        line("piglix_messages_published_total", "counter", "Messages accepted for publishing on this node.", stats.published)
        line("piglix_messages_delivered_total", "counter", "Messages taken from subscriber queues to be written.", stats.delivered)
        line("piglix_messages_dropped_total", "counter", "Messages dropped from full subscriber queues.", stats.dropped)
        line("piglix_subscriptions", "gauge", "Open subscriptions.", stats.subscriptions)
        line("piglix_retained_messages", "gauge", "Messages held in retained history.", stats.retainedMessages)
        line("piglix_retained_bytes", "gauge", "Bytes held in retained history.", stats.retainedBytes)
        line("piglix_retained_topics", "gauge", "Topics with retained history.", stats.retainedTopics)
        line("piglix_view_id", "gauge", "Current cluster view id.", broker.viewID)
        line("piglix_primary", "gauge", "1 when this node is in the primary component.", isPrimary ? 1 : 0)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private func json(_ body: ByteBuffer) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json", .contentLength: String(body.readableBytes)],
            body: .init(byteBuffer: body))
    }
}
