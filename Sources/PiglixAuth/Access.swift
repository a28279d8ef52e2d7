import Foundation
import PiglixTopics

/// What one bearer may do: the patterns of its token's `piglix` claim, and
/// when the token expires. A topic may be published when a publish pattern
/// matches it; a pattern may be subscribed to when a subscribe pattern
/// covers every topic it matches (docs/protocol.md, "Authorization").
public struct Access: Sendable, Equatable {
    public var publish: [TopicPattern]
    public var subscribe: [TopicPattern]
    /// Lock names the bearer may request and release (the `locks` claim).
    public var locks: [TopicPattern]
    /// Seconds since 1970; nil: the token does not expire.
    public var expiresAt: Double?

    public init(publish: [TopicPattern], subscribe: [TopicPattern], locks: [TopicPattern] = [], expiresAt: Double? = nil) {
        self.publish = publish
        self.subscribe = subscribe
        self.locks = locks
        self.expiresAt = expiresAt
    }

    /// Requesting or releasing lock `name` is granted: a `locks` pattern
    /// matches the name read as a topic (`jobs.nightly` matches `jobs.*`);
    /// a name that is not a valid topic (`a..b`) only by `>`.
    public func mayLock(_ name: String) -> Bool {
        let topic = try? Topic(name)
        return locks.contains { pattern in
            if let topic { return pattern.matches(topic) }
            return pattern.name == ">"
        }
    }

    /// Seconds left before the token expires (negative: expired); nil
    /// when it does not expire.
    public var secondsUntilExpiry: Double? { expiresAt.map { $0 - Date().timeIntervalSince1970 } }

    /// Publishing on `topic` is granted.
    public func mayPublish(_ topic: Topic) -> Bool {
        publish.contains { $0.matches(topic) }
    }

    /// Publishing to the group `pattern` (every topic it matches) is granted.
    public func mayPublish(group pattern: TopicPattern) -> Bool {
        publish.contains { $0.covers(pattern) }
    }

    /// Subscribing to `pattern` is granted: some subscribe pattern covers it.
    public func maySubscribe(_ pattern: TopicPattern) -> Bool {
        subscribe.contains { $0.covers(pattern) }
    }
}
