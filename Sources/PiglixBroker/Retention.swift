import DequeModule
import PiglixTopics
import PiglixWire

/// Retained history: per topic, the most recent messages, bounded per topic
/// and over all topics, so `Last-Event-ID` and `earliest` can replay them.
struct Retention {
    /// One topic's retained messages. A class, so the global publish order
    /// holds a reference to it and evicting the oldest message needs no
    /// lookup by topic name.
    final class History {
        let topic: String
        var messages: Deque<StoredMessage> = []
        var bytes = 0
        /// No longer in `topics` (removed, or emptied by eviction): its
        /// entries in the global order are stale.
        var detached = false

        init(topic: String) {
            self.topic = topic
        }

        /// Appends and evicts this topic's oldest past its bounds; returns what it evicted.
        func append(_ message: StoredMessage, cost: Int, settings: BrokerSettings) -> (count: Int, bytes: Int) {
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
    private var order: Deque<(history: History, sequence: UInt64)> = []
    /// The history of the last topic appended to: runs of one topic skip
    /// the lookup by name.
    private var lastHistory: History?
    private(set) var messageCount = 0
    private(set) var bytes = 0
    let settings: BrokerSettings

    init(settings: BrokerSettings) {
        self.settings = settings
    }

    mutating func append(_ message: StoredMessage) {
        let cost = message.costBytes
        let history: History
        if let last = lastHistory, !last.detached, last.topic == message.topic {
            history = last
        } else if let existing = topics[message.topic] {
            history = existing
        } else {
            history = History(topic: message.topic)
            topics[message.topic] = history
        }
        lastHistory = history
        let evicted = history.append(message, cost: cost, settings: settings)
        messageCount += 1 - evicted.count
        bytes += cost - evicted.bytes
        order.append((history, message.id.sequence))
        while messageCount > settings.retainedMessagesMax || bytes > settings.retainedBytesMax || order.count > settings.retainedMessagesMax {
            guard let oldest = order.popFirst() else { break }
            evict(oldest.history, sequence: oldest.sequence)
        }
    }

    private mutating func evict(_ history: History, sequence: UInt64) {
        guard !history.detached, let first = history.messages.first, first.id.sequence == sequence else { return }
        history.messages.removeFirst()
        history.bytes -= first.costBytes
        messageCount -= 1
        bytes -= first.costBytes
        if history.messages.isEmpty {
            topics[history.topic] = nil
            history.detached = true
        }
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
        history.detached = true
        history.messages.removeAll()
        history.bytes = 0
    }

    /// The newest retained id among topics matching any pattern (a stream's
    /// `Last-Event-ID` header).
    func newest(patterns: [TopicPattern]) -> MessageID? {
        var newest: MessageID?
        for (name, history) in topics {
            guard let last = history.messages.last, newest == nil || last.id > newest! else { continue }
            guard let topic = try? Topic(name, limits: settings.topicLimits), patterns.contains(where: { $0.matches(topic) }) else { continue }
            newest = last.id
        }
        return newest
    }

    /// The next retained messages after sequence `after`, in publish order,
    /// of topics matching any pattern and passing `keep`: at most `count`
    /// messages and about `bytes` bytes (a replay cursor's step, so a replay
    /// never copies more history than its subscriber's queue holds).
    /// `through` is the last sequence examined; `caughtUp` when nothing is
    /// retained after it.
    func replayStep(
        patterns: [TopicPattern], after: UInt64, count: Int, bytes: Int, keep: (StoredMessage) -> Bool
    ) -> (messages: [StoredMessage], through: UInt64, caughtUp: Bool) {
        // `order` is in sequence order (stale entries included): find the
        // first entry after the cursor.
        var low = 0
        var high = order.count
        while low < high {
            let mid = (low + high) / 2
            if order[mid].sequence <= after { low = mid + 1 } else { high = mid }
        }
        var messages: [StoredMessage] = []
        var taken = 0
        var through = after
        var matches: [ObjectIdentifier: Bool] = [:]
        var index = low
        // Bounded work per step, even over long stretches of other topics.
        let examineMax = low + 65_536
        while index < order.count, index < examineMax, messages.count < count, messages.isEmpty || taken < bytes {
            let entry = order[index]
            index += 1
            through = entry.sequence
            let history = entry.history
            if history.detached { continue }
            let matching = matches[ObjectIdentifier(history)] ?? {
                let m = (try? Topic(history.topic, limits: settings.topicLimits)).map { t in patterns.contains { $0.matches(t) } } ?? false
                matches[ObjectIdentifier(history)] = m
                return m
            }()
            guard matching else { continue }
            // The entry's message, unless a per-topic bound evicted it.
            var lo = 0
            var hi = history.messages.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if history.messages[mid].id.sequence < entry.sequence { lo = mid + 1 } else { hi = mid }
            }
            guard lo < history.messages.count, history.messages[lo].id.sequence == entry.sequence else { continue }
            let message = history.messages[lo]
            guard keep(message) else { continue }
            messages.append(message)
            taken += message.costBytes
        }
        return (messages, through, index >= order.count)
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
