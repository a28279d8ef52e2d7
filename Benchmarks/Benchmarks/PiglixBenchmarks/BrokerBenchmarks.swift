import Benchmark
import NIOCore
import PiglixBroker
import PiglixWire

/// `Broker.publish` of a batch of 1,000 records on one topic on a single
/// node (what the publish route does with one request-body chunk), to 1 and
/// to 4 subscribers, each of which then takes its queued batch as its
/// stream writer would (`Subscription.next`): the broker's part of a
/// message's way, retention included.
func brokerBenchmarks() {
    for subscribers in [1, 4] {
        Benchmark("Broker.publish batch of 1000 records to \(subscribers) subscriber\(subscribers == 1 ? "" : "s"), then take") { benchmark in
            let broker = try Broker(settings: BrokerSettings())
            let patterns = try broker.parsePatterns(["bench.broker.topic"])
            let subscriptions = try (0..<subscribers).map { _ in
                try broker.subscribe(patterns: patterns, options: SubscriptionOptions(overflow: .dropOldest))
            }
            let records = (0..<batchRecords).map { _ in PublishRecord(topic: "bench.broker.topic", payload: benchPayload()) }
            // Retention fills up first (1,000 messages per topic): the measured
            // loop evicts one retained message per publish, as a busy node does.
            await publishAndTake(broker, records, subscriptions)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                await publishAndTake(broker, records, subscriptions)
            }
            benchmark.stopMeasurement()
            for subscription in subscriptions { subscription.cancel() }
        }
    }
}

private func publishAndTake(_ broker: Broker, _ records: [PublishRecord], _ subscriptions: [Subscription]) async {
    let results = await broker.publish(records, session: 0)
    blackHole(results)
    for subscription in subscriptions {
        let batch = await subscription.next(maxBytes: Int.max)
        precondition(batch.messages.count == records.count, "took \(batch.messages.count) of \(records.count)")
        blackHole(batch)
    }
}
