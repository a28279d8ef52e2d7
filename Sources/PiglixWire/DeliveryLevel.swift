/// The ordering and stability a publisher asks for (DESIGN.md §1).
public enum DeliveryLevel: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Per publisher session and topic, in publish order. The default.
    case fifo = 0
    /// One identical order at every member of a group.
    case total = 1
    /// `total`, delivered only once every member of the group's view holds it.
    case safe = 2

    public init?(name: some StringProtocol) {
        switch name {
        case "fifo": self = .fifo
        case "total": self = .total
        case "safe": self = .safe
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .fifo: return "fifo"
        case .total: return "total"
        case .safe: return "safe"
        }
    }

    public var description: String { name }
}
