import PiglixCluster
import PiglixGroups
import PiglixTopics
import PiglixWire

/// What the idempotence table remembers of a delivered record: enough to
/// answer a retry with the original's id and level (docs/patterns.md,
/// "Idempotent publish").
public struct IdempotentOriginal: Hashable, Sendable {
    /// The level it was delivered at (`total` or `safe`).
    public var level: DeliveryLevel
    /// One node: the id's sequence number (the epoch is the broker's).
    public var sequence: UInt64
    /// Cluster: the message's protocol identity, the same on every member.
    public var source: MessageSource?

    public init(level: DeliveryLevel, sequence: UInt64 = 0, source: MessageSource? = nil) {
        self.level = level
        self.sequence = sequence
        self.source = source
    }
}

extension PublishRecord {
    /// The level a record is delivered at: an idempotent record is at least
    /// `total`, so every member orders it against its retries the same way
    /// and makes the same decision (docs/patterns.md).
    @inline(__always)
    var effectiveDelivery: DeliveryLevel {
        producer != nil && delivery == .fifo ? .total : delivery
    }
}

extension MessageSource {
    /// The id of an idempotent record in a cluster: the earliest delivery
    /// position that holds it (its origin's count at its own sequence number,
    /// every other origin's at 0), the same on every node.
    var agreedID: PiglixWire.MessageID {
        var delivered = [UInt64](repeating: 0, count: Int(origin) + 1)
        delivered[Int(origin)] = seq
        return PiglixWire.MessageID(sequence: 0, position: ClusterPosition(view: view, delivered: delivered))
    }
}

extension Broker {
    /// The cluster-internal group every node joins so the idempotence table
    /// reaches each (re)started node by state transfer. Reserved (`$`): no
    /// client publishes on it.
    public static var idempotencePattern: TopicPattern { ClusterSettings.idempotencePattern }

    /// The receipt a retry gets: the original's id and level.
    func receipt(for original: IdempotentOriginal) -> PublishReceipt {
        let id = original.source?.agreedID ?? PiglixWire.MessageID(epoch: epoch, sequence: original.sequence)
        return PublishReceipt(id: id, delivery: original.level, duplicate: true)
    }

    static func tooOld(_ record: PublishRecord, highest: UInt64, window: UInt64) -> PublishError {
        .sequenceTooOld(
            "Piglix-Sequence \(record.sequence) of producer \(record.producer ?? "") is older than the window of the last \(window) sequence numbers (the highest delivered is \(highest)): it may or may not have been delivered; it was not delivered now"
        )
    }

    /// Decides a single node's idempotent record under the lock: nil to
    /// publish it (it is now recorded with the id it is about to get),
    /// else the answer to give instead.
    func admitLocally(_ record: PublishRecord, level: DeliveryLevel, state: inout State) -> Result<PublishReceipt, PublishError>? {
        guard let producer = record.producer else { return nil }
        let original = IdempotentOriginal(level: level, sequence: state.sequence + 1)
        let decision = state.idempotence.admit(producer: producer, sequence: record.sequence, original: original)
        return answer(decision, for: record, state: &state)
    }

    /// The answer a decision gives a publisher at entry: nil to publish
    /// (new), the original's receipt for a retry, 409 past the window.
    func answer(
        _ decision: IdempotenceDecision<IdempotentOriginal>, for record: PublishRecord, state: inout State
    ) -> Result<PublishReceipt, PublishError>? {
        switch decision {
        case .new:
            return nil
        case .duplicate(let first):
            state.duplicatesSuppressed += 1
            return .success(receipt(for: first))
        case .tooOld(let highest):
            state.tooOldRefused += 1
            return .failure(Self.tooOld(record, highest: highest, window: state.idempotence.limits.windowSequences))
        }
    }

    /// Idempotence counters for `/metrics`.
    public var idempotenceStats: IdempotenceStats {
        state.withLock {
            IdempotenceStats(
                duplicatesSuppressed: $0.duplicatesSuppressed, tooOldRefused: $0.tooOldRefused, producers: $0.idempotence.producerCount,
                producersEvicted: $0.evictionsBefore + $0.idempotence.evictions)
        }
    }
}

/// `/metrics`: `piglix_idempotent_duplicates_total` and friends.
public struct IdempotenceStats: Sendable {
    /// Retries answered with the original's id instead of being delivered.
    public var duplicatesSuppressed: UInt64
    /// Records refused as older than their producer's window.
    public var tooOldRefused: UInt64
    /// Producers remembered now, and forgotten to make room.
    public var producers: Int
    public var producersEvicted: UInt64
}

// MARK: Cluster

extension Broker {
    /// Answers for the idempotent records of a cluster batch that need no
    /// multicast: a retry the table holds (the original's receipt), one
    /// older than its window (409), and any while this node's table is not
    /// yet complete (503: the idempotence group's state transfer has not
    /// finished). Nil entries are published.
    func idempotenceAnswers(_ records: [PublishRecord]) -> [Result<PublishReceipt, PublishError>?] {
        state.withLock { state in
            let ready = state.active.contains(Self.idempotencePattern)
            return records.map { record -> Result<PublishReceipt, PublishError>? in
                guard let producer = record.producer else { return nil }
                guard ready else {
                    return .failure(
                        .unavailable("this node has not yet received the cluster's idempotence state (state transfer); retry in a moment"))
                }
                return answer(state.idempotence.lookup(producer: producer, sequence: record.sequence), for: record, state: &state)
            }
        }
    }

    /// The answer to this node's idempotent record once acked: what its
    /// delivery decided (the table's decision in the agreed order).
    func idempotentAck(_ record: PublishRecord, publish: PublishID) -> Result<PublishReceipt, PublishError>? {
        guard let decision = state.withLock({ $0.idempotentAcks.removeValue(forKey: publish) }) else { return nil }
        switch decision {
        case .new:
            return nil
        case .duplicate(let first):
            return .success(receipt(for: first))
        case .tooOld(let highest):
            return .failure(Self.tooOld(record, highest: highest, window: settings.idempotence.windowSequences))
        }
    }

    /// Decides an idempotent delivery in the agreed order (every member the
    /// same way): true to deliver it. A live delivery is admitted to the
    /// table; one released after a checkpoint was admitted when it passed
    /// live, so it is delivered only if it is the original the table holds.
    /// Until the idempotence transfer completes the table is partial and
    /// decides nothing: the admission is kept for the merge with the
    /// checkpoint, and no other group is joined yet
    /// (`GroupSettings.prerequisiteGroup`), so the delivery has no group.
    static func decideDelivery(
        _ delivery: Delivery, producer: String, sequence: UInt64, own: Bool, state: inout State
    ) -> Bool {
        let id = delivery.message.id
        let source = MessageSource(view: id.view.epoch, origin: id.origin, seq: id.seq)
        if delivery.afterCheckpoint {
            // Decided at its live delivery: released only if it was the
            // original then, even if the window has moved past it since.
            return state.idempotence.remembered(producer: producer, sequence: sequence)?.source == source
        }
        let decision = state.idempotence.admit(
            producer: producer, sequence: sequence, original: IdempotentOriginal(level: delivery.message.level, source: source))
        guard state.active.contains(idempotencePattern) else { return false }
        if own { state.idempotentAcks[delivery.message.publish] = decision }
        switch decision {
        case .new: return true
        case .duplicate:
            state.duplicatesSuppressed += 1
            return false
        case .tooOld:
            state.tooOldRefused += 1
            return false
        }
    }
}
