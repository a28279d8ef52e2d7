import DequeModule
import PiglixTopics
import PiglixWire

/// Retained history: per topic, the most recent messages, bounded per topic
/// and over all topics, so `Last-Event-ID` and `earliest` can replay them.
struct Retention {
    struct History {
        var messages: Deque<StoredMessage> = []
        var bytes = 0

        /// Appends and evicts this topic's oldest past its bounds; returns what it evicted.
        mutating func append(_ message: StoredMessage, cost: Int, settings: BrokerSettings) -> (count: Int, bytes: Int) {
            messages.append(message)
            bytes += cost
            var evicted = (count: 0, bytes: 0)
            while messages.count > settings.retainedMessagesPerTopicMax
                || (bytes > settings.retainedBytesPerTopicMax && messages.count > 1)
            {
                let oldest = messages.removeFirst()
                bytes -= oldest.costBytes
                evicted.count += 1
                evicted.bytes += oldest.costBytes
            }
            return evicted
        }
    }

    private(set) var topics: [String: History] = [:]
    /// Publish order over all topics, to evict the globally oldest message
    /// when a global bound is hit. Entries whose message a per-topic bound
    /// already evicted are skipped when they reach the front.
    private var order: Deque<(topic: String, sequence: UInt64)> = []
    private(set) var messageCount = 0
    private(set) var bytes = 0
    let settings: BrokerSettings

    init(settings: BrokerSettings) {
        self.settings = settings
    }

    mutating func append(_ message: StoredMessage) {
        let cost = message.costBytes
        // The default subscript mutates the history in place: no deque copy.
        let evicted = topics[message.topic, default: History()].append(message, cost: cost, settings: settings)
        messageCount += 1 - evicted.count
        bytes += cost - evicted.bytes
        order.append((message.topic, message.id.sequence))
        while messageCount > settings.retainedMessagesMax || bytes > settings.retainedBytesMax || order.count > settings.retainedMessagesMax {
            guard let oldest = order.popFirst() else { break }
            evict(topic: oldest.topic, sequence: oldest.sequence)
        }
    }

    private mutating func evict(topic: String, sequence: UInt64) {
        guard let first = topics[topic]?.messages.first, first.id.sequence == sequence else { return }
        topics[topic]!.messages.removeFirst()
        topics[topic]!.bytes -= first.costBytes
        messageCount -= 1
        bytes -= first.costBytes
        if topics[topic]!.messages.isEmpty { topics[topic] = nil }
    }

    /// Every retained message of topics `pattern` matches, oldest first.
    func messages(matching pattern: TopicPattern) -> [StoredMessage] {
        var out: [StoredMessage] = []
        for (name, history) in topics {
            guard let topic = try? Topic(name, limits: settings.topicLimits), pattern.matches(topic) else { continue }
            out.append(contentsOf: history.messages)
        }
        out.sort { $0.id.sequence < $1.id.sequence }
        return out
    }

    /// Forgets a topic's history (its entries in the global order are
    /// skipped when they reach the front).
    mutating func removeTopic(_ name: String) {
        guard let history = topics.removeValue(forKey: name) else { return }
        messageCount -= history.messages.count
        bytes -= history.bytes
    }

    /// Retained messages of topics matching any pattern that a cluster
    /// resume position does not cover, in local order, and the newest id.
    func replay(patterns: [TopicPattern], notCoveredBy position: ClusterPosition) -> (messages: [StoredMessage], newest: MessageID?) {
        let all = replay(patterns: patterns, after: nil)
        return (all.messages.filter { m in m.source.map { !position.covers($0) } ?? true }, all.newest)
    }

    /// Retained messages of topics matching any pattern with a sequence
    /// after `sequence` (nil: all), in publish order, and the newest retained
    /// id among the matching topics.
    func replay(patterns: [TopicPattern], after sequence: UInt64?) -> (messages: [StoredMessage], newest: MessageID?) {
        var messages: [StoredMessage] = []
        var newest: MessageID?
        for (name, history) in topics {
            guard let topic = try? Topic(name, limits: settings.topicLimits),
                patterns.contains(where: { $0.matches(topic) }),
                let last = history.messages.last
            else { continue }
            if newest == nil || last.id > newest! { newest = last.id }
            guard let sequence else {
                messages.append(contentsOf: history.messages)
                continue
            }
            // Binary search for the first message after `sequence`.
            var low = 0
            var high = history.messages.count
            while low < high {
                let mid = (low + high) / 2
                if history.messages[mid].id.sequence <= sequence { low = mid + 1 } else { high = mid }
            }
            messages.append(contentsOf: history.messages[low...])
        }
        messages.sort { $0.id.sequence < $1.id.sequence }
        return (messages, newest)
    }
}
