import Metrics
import PiglixTopics

/// Publish → level reached at the publishing node, per delivery level
/// (`piglix_publish_ack_seconds{delivery=…}` in `/metrics`). Created once:
/// a metrics factory lookup per message would cost more than the message.
enum PublishLatency {
    /// Indexed by `DeliveryLevel.rawValue`.
    static let timers: [Metrics.Timer] = DeliveryLevel.allCases.map {
        Metrics.Timer(label: "piglix_publish_ack_seconds", dimensions: [("delivery", $0.metricLabel)], preferredDisplayUnit: .seconds)
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow ? .max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
