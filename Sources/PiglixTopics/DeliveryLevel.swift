/// The ordering and stability a publisher asks for (docs/virtual-synchrony.md).
///
/// One type for the whole system: the core orders and stabilises by it, the
/// wire formats carry its raw value and name, the broker answers with its
/// status, metrics label by it. It lives here, in the lowest module, so
/// every layer shares it without a bridge; what a level *means* is said
/// once, on the type, and nowhere else compares cases to decide behaviour.
/// Adding a level is one case here plus its tests.
public enum DeliveryLevel: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Per publisher session and topic, in publish order, no sequencer. The default.
    case fifo = 0
    /// One identical order at every member of a group (a sequencer per view).
    case total = 1
    /// `total`, delivered only once every member of the group's view holds it.
    case safe = 2

    /// Parses the name used in JSON records, headers and flags.
    public init?(name: some StringProtocol) {
        guard let level = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = level
    }

    /// The name used in JSON records, headers, flags and metric labels.
    public var name: String {
        switch self {
        case .fifo: "fifo"
        case .total: "total"
        case .safe: "safe"
        }
    }

    public var description: String { name }

    /// Whether messages of this level go through the view's sequencer and
    /// are delivered in one order at every member.
    public var isTotallyOrdered: Bool {
        switch self {
        case .fifo: false
        case .total, .safe: true
        }
    }

    /// Whether a message of this level may be delivered only once every
    /// member of the view holds it (stability), and so needs prompt acks.
    public var needsStability: Bool {
        switch self {
        case .fifo, .total: false
        case .safe: true
        }
    }

    /// The HTTP status of a successful publish at this level: 200 when the
    /// broker has delivered it (stable), 202 when it has accepted it.
    public var ackStatus: Int { needsStability ? 200 : 202 }

    /// The label value of this level in metrics (`delivery="…"`).
    public var metricLabel: String { name }
}
