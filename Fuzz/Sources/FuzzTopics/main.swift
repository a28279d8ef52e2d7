// Topic and pattern parsing, and the matching trie. The input is lines:
// each is parsed as a Topic and as a TopicPattern (under the client limits
// or the generous inter-node ones, by the first byte). The parsed patterns
// go into a PatternTrie; every parsed topic is then matched through the
// trie (cached and uncached) and against `TopicPattern.matches` one by one,
// and the answers must agree; then half the patterns are removed and the
// answers checked again. Properties: no trap, the trie agrees with the
// linear scan, a parsed name re-parses.
import FuzzSupport
import PiglixTopics

let nodeLimits = TopicLimits(tokensMax: 1024, bytesMax: 1 << 16, tokenBytesMax: 1 << 16)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let limits = control & 1 == 0 ? TopicLimits.default : nodeLimits
    let lines = input.rest().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    var topics: [Topic] = []
    var patterns: [TopicPattern] = []
    for line in lines.prefix(64) {
        if let topic = try? Topic(line, limits: limits) {
            topics.append(topic)
            check((try? TopicPattern(line, limits: limits)) != nil, "topic \(line) is not a valid pattern")
        }
        if let pattern = try? TopicPattern(line, limits: limits) {
            patterns.append(pattern)
            check(pattern.name == line, "pattern name changed")
            if pattern.isLiteral {
                check((try? Topic(line, limits: limits)) != nil, "literal pattern \(line) is not a valid topic")
            }
        }
    }
    var trie = PatternTrie<Int>(cacheCapacity: Int(control >> 1 & 3))
    for (index, pattern) in patterns.enumerated() { trie.insert(pattern, index) }
    check(trie.count == patterns.count, "trie holds \(trie.count) of \(patterns.count) pairs")
    var live = Set(patterns.indices)
    func verify() {
        for topic in topics {
            let expected = Set(live.filter { patterns[$0].matches(topic) })
            let cached = trie.match(topic)
            let uncached = trie.matchUncached(topic)
            check(Set(cached) == expected && cached.count == expected.count, "trie matched \(cached) for \(topic), expected \(expected.sorted())")
            check(Set(uncached) == expected && uncached.count == expected.count, "uncached \(uncached) for \(topic), expected \(expected.sorted())")
            check(trie.cachedTopicCount <= trie.cacheCapacity, "cache over capacity")
        }
    }
    verify()
    for index in patterns.indices where index % 2 == Int(control >> 3 & 1) {
        check(trie.remove(patterns[index], index), "could not remove \(patterns[index])")
        check(!trie.remove(patterns[index], index), "removed \(patterns[index]) twice")
        live.remove(index)
    }
    check(trie.count == live.count, "trie holds \(trie.count) after removals, expected \(live.count)")
    verify()
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

func seeds() -> [[UInt8]] {
    let sets = [
        ["a.b", "a.*", "a.>", ">", "*.b", "a.b.c"],
        ["sensors.paris.temp", "sensors.*.temp", "sensors.>", "sensors.paris.*", "*.*.*", "$SYS.broker.views"],
        ["orders.eu.1", "orders.eu.>", "orders.*.1", "orders.us.2", "orders.*.*", "orders"],
        ["a..b", "a.*b", "a.>.c", ".a", "a.", "a b", "ä.ö.ü", "a.>"],
        [String(repeating: "x", count: 64) + ".y", String(repeating: "x", count: 65), (1...17).map(String.init).joined(separator: ".")],
        ["a.b.c.d.e.f.g.h", "a.*.c.*.e.*.g.*", "a.b.>", "*.>", "a.b.c.d.e.f.g.h.i"],
    ]
    var out: [[UInt8]] = []
    for (index, lines) in sets.enumerated() {
        for control: UInt8 in [0, 1, 6, 9] where (index + Int(control)) % 2 == 0 || control == 0 {
            out.append([control] + Array(lines.joined(separator: "\n").utf8))
        }
    }
    return out
}

