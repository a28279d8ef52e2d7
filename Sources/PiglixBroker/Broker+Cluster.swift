import Metrics
import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics
import PiglixWire

/// The broker on groups (docs/protocol.md, "Cluster"): a pattern's first
/// local subscriber joins its group, the last one leaves it; publishes go
/// through the group protocol and come back as deliveries on every node
/// whose groups match; a joining group's history arrives by state transfer.
extension Broker: ClusterApplication {

    // MARK: Publish

    /// Publishes records in order and returns when each has its result. On
    /// a single node that is at once; in a cluster the records go to the
    /// group protocol as one batch and each result comes when its level is
    /// reached here (`fifo`, `total`: delivered in order; `safe`: stable).
    public func publish(_ records: [PublishRecord], session: UInt64) async -> [Result<PublishReceipt, PublishError>] {
        if cluster == nil { return await publishLocally(records) }
        return await withCheckedContinuation { continuation in
            publish(records, session: session) { continuation.resume(returning: $0) }
        }
    }

    /// The same without waiting: `done` gets the results, in input order
    /// (at once on a single node). A publish stream keeps several batches in
    /// flight this way and writes their acks in order as they complete.
    public func publish(
        _ records: [PublishRecord], session: UInt64, done: @escaping @Sendable ([Result<PublishReceipt, PublishError>]) -> Void
    ) {
        guard let cluster else { return done(publishLocally(records)) }
        var results = [Result<PublishReceipt, PublishError>?](repeating: nil, count: records.count)
        var batch: [ClusterPublish] = []
        var indices: [Int] = []
        let closed = isShuttingDown
        // Idempotent records are checked against the table first: a retry of
        // a record the table holds is answered at once, without a multicast.
        let early = records.contains { $0.producer != nil } ? idempotenceAnswers(records) : nil
        var last: Topic?
        var levels = records.map(\.effectiveDelivery)
        // A record a work queue here takes is sent `total` at least: the
        // coordinator is chosen by its place in the agreed order
        // (docs/patterns.md, "Work queues").
        let queuePatterns = queuesExist.load(ordering: .relaxed) ? state.withLock { $0.queueTable.patterns } : []
        for (i, record) in records.enumerated() {
            do throws(PublishError) {
                if closed { throw PublishError.shuttingDown }
                let topic = try checkTopic(of: record, after: &last)
                try check(headers: record.headers)
                if let answer = early?[i] {
                    results[i] = answer
                    continue
                }
                if levels[i] == .fifo, !queuePatterns.isEmpty, queuePatterns.contains(where: { $0.matches(topic) }) { levels[i] = .total }
                batch.append(
                    ClusterPublish(
                        destination: .topic(topic), level: levels[i],
                        session: session, payload: ClusterPayload.encode(record)))
                indices.append(i)
            } catch {
                results[i] = .failure(error)
            }
        }
        let idempotent = early != nil
        let started = ContinuousClock.now
        let resolved = results
        let positions = indices
        let levelsSent = levels
        cluster.publish(batch) { [weak self] outcomes in
            var results = resolved
            let nanoseconds = (ContinuousClock.now - started).nanosecondsClamped
            var published: UInt64 = 0
            for (k, outcome) in outcomes.enumerated() {
                let i = positions[k]
                switch outcome {
                case .acked(let view, let delivered, let publish):
                    if idempotent, records[i].producer != nil, let self, let answer = self.idempotentAck(records[i], publish: publish) {
                        results[i] = answer
                        if case .success(let receipt) = answer, !receipt.duplicate {
                            PublishLatency.timers[Int(levelsSent[i].rawValue)].recordNanoseconds(nanoseconds)
                            published += 1
                        }
                        continue
                    }
                    let id = PiglixWire.MessageID(sequence: 0, position: ClusterPosition(view: view, delivered: delivered))
                    results[i] = .success(PublishReceipt(id: id, delivery: levelsSent[i]))
                    PublishLatency.timers[Int(levelsSent[i].rawValue)].recordNanoseconds(nanoseconds)
                    published += 1
                case .refused(let why):
                    results[i] = .failure(.unavailable(why.description))
                case .failed(.lostPrimary):
                    results[i] = .failure(
                        .outcomeUnknown(
                            "this node left the primary component before the message reached its level; it may or may not be delivered"))
                case .failed(.leftCluster):
                    results[i] = .failure(.outcomeUnknown("this node left the cluster before the message reached its level"))
                }
            }
            if published > 0 { self?.state.withLock { $0.published += published } }
            done(results.map { $0! })
        }
    }

    /// A single node's batch: validation outside the lock (a topic repeated
    /// from the previous record is validated once), then the fan-out in
    /// slices of bounded work (`LocalBatch`), each subscriber's writer
    /// woken at most once per slice.
    private func publishLocally(_ records: [PublishRecord]) -> [Result<PublishReceipt, PublishError>] {
        if records.count == 1 {
            do throws(PublishError) { return [.success(try publish(records[0]))] } catch { return [.failure(error)] }
        }
        var batch = LocalBatch(records, broker: self)
        while !batch.isDone { fanOutSlice(&batch) }
        return batch.results
    }

    /// The same, yielding the thread between slices: a batch that reaches
    /// many subscribers (12,000 messages to 1,000 subscribers is 12 M queue
    /// entries) takes its turn with every other request and stream writer
    /// instead of holding a thread of the cooperative pool for its length.
    func publishLocally(_ records: [PublishRecord]) async -> [Result<PublishReceipt, PublishError>] {
        if records.count == 1 {
            do throws(PublishError) { return [.success(try publish(records[0]))] } catch { return [.failure(error)] }
        }
        var batch = LocalBatch(records, broker: self)
        while true {
            fanOutSlice(&batch)
            if batch.isDone { return batch.results }
            await Task.yield()
        }
    }

    /// Queue entries one lock hold may add in a local batch publish.
    static let fanOutWorkPerLock = 16_384

    /// A local batch being published: its records, validated, and how far
    /// the fan-out has got.
    struct LocalBatch {
        let records: [PublishRecord]
        var results: [Result<PublishReceipt, PublishError>]
        var valid: [(index: Int, topic: Topic, isText: Bool)] = []
        var next = 0
        /// Subscribers whose parked writer the batch left asleep so far.
        var deferred: [SubscriptionID] = []
        var isDone: Bool { next >= valid.count }

        init(_ records: [PublishRecord], broker: Broker) {
            self.records = records
            var results = [Result<PublishReceipt, PublishError>](repeating: .failure(.shuttingDown), count: records.count)
            valid.reserveCapacity(records.count)
            var last: Topic?
            for (i, record) in records.enumerated() {
                do throws(PublishError) {
                    let topic = try broker.checkTopic(of: record, after: &last)
                    try broker.check(headers: record.headers)
                    valid.append((i, topic, UTF8Check.isValid(record.payload)))
                } catch {
                    results[i] = .failure(error)
                }
            }
            self.results = results
        }
    }

    /// One slice of a local batch's fan-out under one lock hold: messages
    /// until they have reached `fanOutWorkPerLock` queue entries. The batch
    /// stays in order; other publishers may interleave between slices. A
    /// parked writer is woken once a batch-sized run is queued for it, and
    /// the rest at the batch's end: slices are small, writes should not be.
    private func fanOutSlice(_ batch: inout LocalBatch) {
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            var work = 0
            // The subscribers of the last topic, looked up once for a run of
            // records on one topic (the trie cannot change under the lock).
            var lastTopic: String?
            var targets: [(id: SubscriptionID, queue: SubscriberQueue)] = []
            while !batch.isDone, work < Self.fanOutWorkPerLock {
                let (i, topic, isText) = batch.valid[batch.next]
                batch.next += 1
                let record = batch.records[i]
                if state.closed {
                    batch.results[i] = .failure(.shuttingDown)
                    continue
                }
                let level = record.effectiveDelivery
                if record.producer != nil, let answer = admitLocally(record, level: level, state: &state) {
                    batch.results[i] = answer
                    continue
                }
                let message = storeLocally(record, topic: topic, level: level, isText: isText, state: &state)
                if lastTopic != topic.name {
                    lastTopic = topic.name
                    targets.removeAll(keepingCapacity: true)
                    for id in state.trie.match(topic) {
                        if let queue = state.queues[id] { targets.append((id, queue)) }
                    }
                }
                for (id, queue) in targets {
                    if Self.enqueue(message, to: queue, id: id, state: &state, settings: settings, wake: &wake, deferringWake: true) {
                        batch.deferred.append(id)
                    }
                }
                queueLocally(message, topic: topic, state: &state, wake: &wake)
                work += 1 + targets.count
                batch.results[i] = .success(PublishReceipt(id: message.id, delivery: level))
            }
            if batch.isDone { Self.wakeDeferred(batch.deferred, state: &state, wake: &wake) }
        }
        for continuation in wake { continuation.resume() }
    }

    // MARK: Subscribe

    /// Registers a subscription. In a cluster, first joins the groups of its
    /// patterns that have no local subscriber yet and waits for their state
    /// transfer, so the replay its start position asks for includes the
    /// history other nodes hold. It waits while a transfer makes progress;
    /// after `joinTimeout` without a checkpoint chunk (no primary component,
    /// no provider), it starts without that history and says so with a
    /// `gap` record (docs/protocol.md).
    public func open(
        patterns: [TopicPattern], options: SubscriptionOptions, joinTimeout: Duration = .seconds(5)
    ) async throws(SubscribeError) -> Subscription {
        guard let cluster else { return try subscribe(patterns: patterns, options: options) }
        if patterns.isEmpty { throw .noPatterns }
        let (id, join, ready) = try state.withLock {
            state throws(SubscribeError) -> (SubscriptionID, [TopicPattern], Bool) in
            if state.closed { throw .shuttingDown }
            if state.queues.count >= settings.subscriptionsMax { throw .tooManySubscriptions(max: settings.subscriptionsMax) }
            let id = SubscriptionID(rawValue: state.nextSubscription)
            state.nextSubscription += 1
            let queue = SubscriberQueue(patterns: patterns, overflow: options.overflow)
            queue.start = options.start
            var join: [TopicPattern] = []
            for pattern in patterns {
                state.groups[pattern.name, default: GroupCounters()].subscribers += 1
                state.patternSubscribers[pattern, default: 0] += 1
                if state.patternSubscribers[pattern] == 1 { join.append(pattern) }
                if !state.active.contains(pattern) { queue.joining.insert(pattern) }
            }
            let ready = queue.joining.isEmpty
            state.queues[id] = queue
            if ready { Self.register(id, state: &state) }
            return (id, join, ready)
        }
        for pattern in join { cluster.join(pattern) }
        if !ready {
            let timeout = Task { [weak self] in
                var deadline = ContinuousClock.now + joinTimeout
                while true {
                    try await Task.sleep(until: deadline)
                    guard let self else { return }
                    // A transfer that applied a chunk lately is still coming;
                    // so is the idempotence table's, which the core completes
                    // before it joins any other group.
                    let progress = self.state.withLock { state -> ContinuousClock.Instant? in
                        guard let queue = state.queues[id] else { return nil }
                        var patterns = Array(queue.joining)
                        if !state.active.contains(Self.idempotencePattern) { patterns.append(Self.idempotencePattern) }
                        return patterns.compactMap { state.transferProgress[$0] }.max()
                    }
                    if let progress, progress + joinTimeout > ContinuousClock.now {
                        deadline = progress + joinTimeout
                        continue
                    }
                    self.forceRegister(id)
                    return
                }
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    guard let queue = state.queues[id], !queue.joining.isEmpty else { return true }
                    state.queues[id]!.registered = continuation
                    return false
                }
                if now { continuation.resume() }
            }
            timeout.cancel()
        }
        let newest = state.withLock { state in state.queues[id]?.newestRetained }
        return Subscription(id: id, patterns: patterns, newestRetained: newest, broker: self)
    }

    /// Registers a waiting subscription with what is there when its groups
    /// did not finish joining in time (no primary component, say).
    func forceRegister(_ id: SubscriptionID) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let queue = state.queues[id], !queue.joining.isEmpty else { return nil }
            let missing = queue.joining.map(\.name).sorted()
            logger.warning("groups \(missing) did not finish joining in time; the subscription starts without their history")
            state.queues[id]!.joining = []
            Self.register(id, state: &state)
            if queue.start != .live {
                // Never a silently empty history: the stream says what is missing.
                for group in missing {
                    _ = state.queues[id]?.queueView(
                        .gap(lost: 0, reason: "history of group \(group) unavailable: its state transfer did not complete (no ready member reachable)"))
                }
            }
            let waiter = state.queues[id]!.registered
            state.queues[id]!.registered = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Queues the replay the subscription's start asks for and adds it to the
    /// trie, atomically (under the lock), so history and live traffic meet
    /// without loss or repeat.
    static func register(_ id: SubscriptionID, state: inout State) {
        guard let queue = state.queues.removeValue(forKey: id) else { return }
        switch queue.start {
        case .live:
            break
        case .earliest:
            queue.replay = ReplayCursor(after: 0)
        case .after(let resume):
            if let position = resume.position {
                queue.replay = ReplayCursor(after: 0, notCoveredBy: position)
                queue.resumeFloor = position
            } else {
                // A single-node id: none of its messages is held here.
                queue.replay = ReplayCursor(after: 0)
            }
        }
        queue.newestRetained = state.retention.newest(patterns: queue.patterns)
        // The stream starts with the current view of each group.
        queue.views.removeAll()
        state.queues[id] = queue
        // History is read from retention as the queue drains (a cursor, not
        // a copy); the subscription goes live when it has caught up.
        replayOrGoLive(id, state: &state, settings: state.retention.settings)
        if state.queues[id]?.lastPosition == nil { state.queues[id]?.lastPosition = state.position }
    }

    /// The `view` records a new stream starts with; pending view records
    /// they already say are dropped from the queue.
    func initialViews(_ id: SubscriptionID, patterns: [TopicPattern]) -> [ControlRecord] {
        // A work queue stream is in no group: it starts with its messages.
        if state.withLock({ $0.queues[id]?.workQueue != nil }) { return [] }
        guard cluster != nil else {
            return patterns.map { .view(group: $0.name, view: viewID, members: [settings.nodeID], primary: true) }
        }
        return state.withLock { state in
            let primary = state.clusterStatus?.primary ?? false
            let records: [ControlRecord] = patterns.map { p in
                let group = state.groupViews[p]
                return .view(
                    group: p.name, view: group?.view ?? 0, members: group?.members ?? [],
                    primary: primary)
            }
            if let queue = state.queues[id] {
                for (p, record) in zip(patterns, records) { queue.lastView[p.name] = record }
                queue.views.removeAll { pending in records.contains(pending.record) }
            }
            return records
        }
    }

    // MARK: ClusterApplication (called on the cluster's event loop)

    public func clusterDeliver(_ batch: [ClusterDelivery]) {
        // Decoded outside the lock; then one lock for the batch.
        struct Prepared {
            var delivery: Delivery
            var position: ClusterPosition
            var message: StoredMessage?
            var topic: Topic?
            /// An idempotent record's producer and sequence.
            var idempotence: (producer: String, sequence: UInt64)?
            var own = false
            /// A lock operation (`$piglix.locks`): never stored or matched.
            var lock = false
        }
        var prepared: [Prepared] = []
        prepared.reserveCapacity(batch.count)
        for item in batch {
            let delivery = item.delivery
            let position = ClusterPosition(view: item.viewEpoch, delivered: item.delivered)
            guard case .publish(.topic(let topic)) = delivery.message.kind else {
                prepared.append(Prepared(delivery: delivery, position: position, own: item.own))
                continue
            }
            if topic == Self.locksTopic {
                prepared.append(Prepared(delivery: delivery, position: position, lock: true))
                continue
            }
            // Every node decides every idempotent record, matched or not, so
            // its table stays the cluster's (one comparison for the others).
            let idempotence = ClusterPayload.idempotence(of: delivery.message.payload)
            guard !delivery.groups.isEmpty, let (headers, payload) = ClusterPayload.decode(delivery.message.payload) else {
                prepared.append(Prepared(delivery: delivery, position: position, topic: topic, idempotence: idempotence, own: item.own))
                continue
            }
            let id = delivery.message.id
            let message = StoredMessage(
                id: PiglixWire.MessageID(sequence: 0, position: position), topic: topic.name, payload: payload,
                delivery: delivery.message.level, headers: headers,
                payloadIsText: UTF8Check.isValid(payload), source: MessageSource(view: id.view.epoch, origin: id.origin, seq: id.seq))
            prepared.append(
                Prepared(delivery: delivery, position: position, message: message, topic: topic, idempotence: idempotence, own: item.own))
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            for index in prepared.indices {
                // Taken out of the array first, so the box is unique and
                // setting its sequence does not copy it.
                let taken = prepared[index].message.take()
                let item = prepared[index]
                let delivery = item.delivery
                if !delivery.afterCheckpoint { state.position = item.position }
                if item.lock {
                    deliverLockOperation(delivery, state: &state)
                    continue
                }
                var decided = true
                if let (producer, sequence) = item.idempotence {
                    decided = Self.decideDelivery(delivery, producer: producer, sequence: sequence, own: item.own, state: &state)
                }
                // Work queues (Broker+QueuesCluster.swift): every live
                // control record and total/safe message, in delivery order.
                if !delivery.afterCheckpoint && delivery.message.level != .fifo {
                    queueDelivery(
                        delivery, message: taken, idempotence: item.idempotence, decided: decided, own: item.own, state: &state,
                        wake: &wake)
                }
                guard decided, var message = taken, let topic = item.topic else { continue }
                state.sequence += 1
                message.id.sequence = state.sequence
                if delivery.afterCheckpoint, let group = delivery.groups.first {
                    // Released after a checkpoint: other local groups matching the
                    // topic had it live already, and so had their subscribers.
                    let elsewhere = state.active.contains { $0 != group && $0.matches(topic) }
                    if !elsewhere { state.retention.append(message) }
                    for subscriber in state.trie.match(topic) {
                        guard let queue = state.queues[subscriber], queue.patterns.contains(group),
                            !queue.patterns.contains(where: { $0 != group && state.active.contains($0) && $0.matches(topic) })
                        else { continue }
                        Self.enqueue(message, for: subscriber, state: &state, settings: settings, wake: &wake)
                    }
                } else {
                    state.retention.append(message)
                    for subscriber in state.trie.match(topic) {
                        Self.enqueue(message, for: subscriber, state: &state, settings: settings, wake: &wake)
                    }
                }
            }
            queuesExist.store(!state.queueTable.isEmpty, ordering: .relaxed)
        }
        for continuation in wake { continuation.resume() }
    }

    public func clusterStatusChanged(_ status: ClusterStatus) {
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            let old = state.clusterStatus
            state.clusterStatus = status
            state.lock.owner = processName(node: nodeID(forName: status.node), incarnation: status.incarnation)
            if old?.primary == true, !status.primary {
                endLocalLocks(
                    reason: "this node left the primary component (view \(status.view): \(status.members.joined(separator: ",")) is not a majority): the lock may be granted elsewhere",
                    orphan: true, state: &state)
            }
            guard let old, old.primary != status.primary else { return }
            // Subscribers hear that their groups left (or rejoined) the primary component.
            for id in Array(state.queues.keys) {
                for pattern in state.queues[id]!.patterns {
                    let group = state.groupViews[pattern]
                    let record = ControlRecord.view(
                        group: pattern.name, view: group?.view ?? 0, members: group?.members ?? [],
                        primary: status.primary)
                    if let w = state.queues[id]!.queueView(record) { wake.append(w) }
                }
            }
        }
        for continuation in wake { continuation.resume() }
    }

    public func clusterGroupViewChanged(pattern: TopicPattern, view: UInt64, members: [String], primary: Bool) {
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            if let old = state.groupViews[pattern], old.view == view, old.members == members { return }
            state.groupViews[pattern] = (view, members)
            let record = ControlRecord.view(group: pattern.name, view: view, members: members, primary: primary)
            for id in Array(state.queues.keys)
            where state.queues[id]!.patterns.contains(pattern) && state.queues[id]!.joining.isEmpty && state.queues[id]!.workQueue == nil {
                if let w = state.queues[id]!.queueView(record) { wake.append(w) }
            }
        }
        for continuation in wake { continuation.resume() }
    }

    public func clusterGroupViewInstalled(pattern: TopicPattern, view: UInt64, clusterEpoch: UInt64, processes: [String]) {
        guard pattern == Self.locksPattern else { return }
        state.withLock { state in lockGroupViewInstalled(view: view, clusterEpoch: clusterEpoch, processes: processes, state: &state) }
    }

    public func clusterCheckpoint(pattern: TopicPattern) -> any CheckpointReader {
        if pattern == Self.locksPattern {
            // The table at the cut: every operation and view delivered before.
            return LockCheckpoint(bytes: state.withLock { $0.lock.table.encoded() })
        }
        if pattern == Self.queuesPattern { return queueCheckpoint() }
        if pattern == Self.idempotencePattern {
            // The table at this point of the delivery stream (the cut), and
            // this node's position there, which names the cut to the joiner.
            return state.withLock { state in
                RetainedCheckpoint(
                    table: state.idempotence.snapshot(), cut: state.position ?? ClusterPosition(view: 0, delivered: []))
            }
        }
        return RetainedCheckpoint(messages: state.withLock { $0.retention.messages(matching: pattern) })
    }

    public func clusterApplyCheckpoint(pattern: TopicPattern, chunk: [UInt8], first: Bool, last: Bool) -> Bool {
        if pattern == Self.locksPattern {
            // One chunk (LockCheckpoint): the provider's table at the cut.
            return state.withLock { state in applyLockCheckpoint(chunk, state: &state) }
        }
        if pattern == Self.queuesPattern { return applyQueueCheckpoint(chunk: chunk, first: first, last: last) }
        let messages: [StoredMessage]
        let table: (cut: ClusterPosition, producers: [CheckpointCodec.ProducerState])?
        do {
            table = pattern == Self.idempotencePattern ? try CheckpointCodec.decodeTable(chunk) : nil
            messages = table == nil ? try CheckpointCodec.decode(chunk, topicLimits: settings.topicLimits) : []
        } catch {
            logger.error("a checkpoint chunk of \(pattern.name) is unreadable (\(error)); asking another member")
            return false
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            if pattern == Self.idempotencePattern {
                if first { state.incomingTable.removeAll() }
                if let table { state.incomingTable.append(contentsOf: table.producers) }
                if last, let cut = table?.cut {
                    // The provider's table at the cut, then what this node
                    // admitted after it (docs/patterns.md).
                    state.idempotence.merge(state.incomingTable) { original in
                        guard let source = original.source else { return false }
                        return !cut.covers(source)
                    }
                }
                if last { state.incomingTable = [] }
            }
            let others = state.active.filter { $0 != pattern }
            func coveredElsewhere(_ name: String) -> Bool {
                guard let topic = try? Topic(name, limits: settings.topicLimits) else { return false }
                return others.contains { $0.matches(topic) }
            }
            // The checkpoint replaces this node's (possibly stale) history of
            // the topics only this group covers; later chunks add to it.
            if first {
                for name in Array(state.retention.topics.keys) where !coveredElsewhere(name) {
                    if let topic = try? Topic(name, limits: settings.topicLimits), pattern.matches(topic) {
                        state.retention.removeTopic(name)
                    }
                }
            }
            var installed: [StoredMessage] = []
            for var message in messages where !coveredElsewhere(message.topic) {
                state.sequence += 1
                message.id.sequence = state.sequence
                state.retention.append(message)
                installed.append(message)
            }
            if last {
                state.active.insert(pattern)
                state.transferProgress[pattern] = nil
            } else {
                state.transferProgress[pattern] = .now
            }
            for id in Array(state.queues.keys) {
                guard let queue = state.queues[id], queue.patterns.contains(pattern) else { continue }
                if queue.joining.isEmpty {
                    // Still replaying: its cursor reads these from retention.
                    if queue.replay != nil { continue }
                    // Registered before (a rejoin after a partition): add what
                    // the group delivered while this node was away.
                    let since = queue.lastPosition
                    for message in installed {
                        if let since, let source = message.source, since.covers(source) { continue }
                        Self.enqueue(message, for: id, state: &state, settings: settings, wake: &wake)
                    }
                } else if last {
                    queue.joining.remove(pattern)
                    if queue.joining.isEmpty {
                        Self.register(id, state: &state)
                        if let w = state.queues[id]?.registered {
                            state.queues[id]!.registered = nil
                            wake.append(w)
                        }
                    }
                }
            }
        }
        for continuation in wake { continuation.resume() }
        return true
    }

    public func clusterRejoining() {
        // The core joins every local group again, with state transfer; until
        // each checkpoint arrives its deliveries carry no local group.
        var wake: [CheckedContinuation<Void, Never>] = []
        defer { for w in wake { w.resume() } }
        state.withLock { state in
            queuesRejoining(state: &state, wake: &wake)
            state.active.removeAll()
            state.groupViews.removeAll()
            // The old incarnation's table may hold records the primary never
            // delivered (this node was excluded): the new one admits from
            // empty until the idempotence transfer merges the cluster's.
            // The old incarnation's lock requests are dropped by the
            // primary's view without it; this one starts from the transfer.
            endLocalLocks(
                reason: "this node was excluded from the cluster view and rejoins as a new incarnation: the lock may be granted elsewhere",
                orphan: false, state: &state)
            state.lock.orphans.removeAll()
            state.lock.pendingViews.removeAll()
            state.lock.table = LockTable(limits: settings.locks.table)
            state.evictionsBefore += state.idempotence.evictions
            state.idempotence = IdempotenceTable(limits: settings.idempotence)
            state.incomingTable = []
        }
    }

    // MARK: Status

    /// `/v1/groups`: on a single node the patterns with local subscribers; in
    /// a cluster every group of the cluster, with this node's counters.
    public func allGroups() async -> [GroupInfo] {
        let local = groups
        guard let cluster else { return local }
        var byPattern: [String: GroupInfo] = [:]
        for info in local { byPattern[info.pattern] = info }
        for group in await cluster.groupViews() {
            var info = byPattern[group.pattern.name]
                ?? GroupInfo(pattern: group.pattern.name, view: group.view, members: group.members, localSubscribers: 0, delivered: 0)
            info.view = group.view
            info.members = group.members
            byPattern[group.pattern.name] = info
        }
        byPattern[Self.idempotencePattern.name] = nil
        byPattern[Self.locksPattern.name] = nil
        byPattern[Self.queuesPattern.name] = nil
        return byPattern.values.sorted { $0.pattern < $1.pattern }
    }

    /// The cluster as this node sees it, nil for a single node.
    public var clusterStatus: ClusterStatus? { cluster?.status }

    /// The group layer's counters, nil for a single node.
    public var clusterCounters: ClusterCounters? { cluster?.counters }

    /// Whether this node is a member of a cluster (not a single node).
    public var isClustered: Bool { cluster != nil }

    /// Joins (or forms) the cluster, with this broker receiving its
    /// deliveries; nothing on a single node.
    public func startCluster() async throws {
        guard let cluster else { return }
        _ = try await cluster.start(application: self)
        // Every node is a member of the idempotence group for as long as it
        // runs (its subscriber count never drops to 0), so each
        // incarnation receives the table by state transfer.
        // The same for the work queue table (Broker+Queues.swift) and the
        // lock table (Broker+Locks.swift); the core joins them once the
        // idempotence group is active.
        let joins = state.withLock { state in
            [Self.idempotencePattern, Self.queuesPattern, Self.locksPattern].filter { pattern in
                state.patternSubscribers[pattern, default: 0] += 1
                return state.patternSubscribers[pattern] == 1
            }
        }
        for pattern in joins { cluster.join(pattern) }
        let lease = startLockLease()
        let delay = cluster.suspicionTimeout * settings.locks.delayFraction
        state.withLock {
            $0.lock.leaseTask = lease
            $0.lock.delay = delay
        }
    }

    /// Leaves the cluster: peers see the silence and install a view without
    /// this node. Nothing on a single node.
    public func leaveCluster() async {
        await cluster?.shutdown()
    }

    /// Ready for traffic: a single node always; a cluster node while it is a
    /// member of the primary component.
    public var isReady: Bool {
        guard let cluster else { return !isShuttingDown }
        return !isShuttingDown && cluster.status.primary
    }
}
