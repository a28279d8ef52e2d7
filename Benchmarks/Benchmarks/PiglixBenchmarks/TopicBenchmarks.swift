import Benchmark
import PiglixTopics

/// PatternTrie.match: 1,000 topics against a trie of 1,000 subscriptions
/// (literal, `*` and `>` patterns), with its match cache (the broker's way)
/// and without it.
func topicBenchmarks() {
    let (trie, topics) = makeTrie()
    Benchmark("PatternTrie.match, 1000 topics, cached") { benchmark in
        var trie = trie
        // Fill the cache first: the measured loop is the broker's steady state.
        for topic in topics { blackHole(trie.match(topic)) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for topic in topics { blackHole(trie.match(topic)) }
        }
    }
    Benchmark("PatternTrie.matchUncached, 1000 topics") { benchmark in
        for _ in benchmark.scaledIterations {
            for topic in topics { blackHole(trie.matchUncached(topic)) }
        }
    }
}

/// 1,000 subscriptions over 100 devices × 10 kinds (`site.dN.kind`,
/// `site.dN.*`, `site.>`…) and 1,000 topics that each match several.
private func makeTrie() -> (PatternTrie<Int>, [Topic]) {
    var trie = PatternTrie<Int>(cacheCapacity: 4096)
    var value = 0
    for device in 0..<100 {
        for kind in 0..<8 {
            trie.insert(try! TopicPattern("site.d\(device).k\(kind)"), value)
            value += 1
        }
        trie.insert(try! TopicPattern("site.d\(device).*"), value)
        trie.insert(try! TopicPattern("*.d\(device).>"), value + 1)
        value += 2
    }
    let topics = (0..<batchRecords).map { try! Topic("site.d\($0 % 100).k\($0 % 10)") }
    return (trie, topics)
}
