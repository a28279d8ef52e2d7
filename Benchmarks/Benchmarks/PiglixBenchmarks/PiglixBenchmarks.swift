import Benchmark

/// The hot path in process, one benchmark per step a published message
/// takes (docs/performance.md, "Microbenchmarks"): topic match, binary frame
/// encode and decode, NDJSON decode, the broker's batch publish, and the
/// cluster's codec. Each iteration handles one batch of
/// ``batchRecords`` records, so a metric divided by 1,000 is per message.
///
/// Metrics: wall clock and CPU time (which move with the machine's load, so
/// they are reported, never checked) and mallocCountTotal (which does not
/// move: scripts/bench-check.sh fails when it grows more than 5 %, or by more
/// than 100 per batch, over the stored baseline). `instructions` is left out: this machine's kernel
/// reports no hardware counters (`perf stat -e instructions true` says
/// "not supported"); scripts/bench-counts.sh counts the node's instructions
/// under callgrind instead.
let benchmarks: @Sendable () -> Void = {
    let unchecked = BenchmarkThresholds(relative: [:], absolute: [:])
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 3,
        maxDuration: .seconds(2),
        maxIterations: 200,
        thresholds: [
            // More than 5 % over the baseline, or more than 100 over it (0.1
            // allocation per record): the relative bound alone never fires on
            // a baseline of 0, where ordo-one computes no relative change.
            .mallocCountTotal: BenchmarkThresholds(relative: [.p50: 5.0, .p90: 5.0], absolute: [.p50: 100, .p90: 100]),
            .wallClock: unchecked,
            .cpuTotal: unchecked,
        ]
    )
    topicBenchmarks()
    wireBenchmarks()
    brokerBenchmarks()
    clusterCodecBenchmarks()
}

/// Records per batch in every benchmark.
let batchRecords = 1_000
