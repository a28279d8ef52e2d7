/// Maps patterns to values and a topic to the values of every matching
/// pattern in O(tokens), like nats-server's sublist: each level holds literal
/// children plus dedicated `*` and `>` children. A bounded cache keyed by
/// literal topic answers repeated topics without walking the trie; any
/// insert or remove empties it (the generation changes).
///
/// A value type: a copy is an independent trie. Not shared between threads.
public struct PatternTrie<Value: Hashable & Sendable>: Sendable {
    struct Node: Sendable {
        /// Literal tokens, plus the keys `*` and `>` for the wildcards: a
        /// literal token can never be `*` or `>`, so the keys cannot collide.
        var children: [Substring: Node] = [:]
        /// Values of the patterns that end at this node.
        var values: Set<Value> = []

        var isEmpty: Bool { children.isEmpty && values.isEmpty }
    }

    private var root = Node()
    private var cache: [String: [Value]] = [:]
    /// Most topics kept in the match cache. Bounded so a publisher cycling
    /// through unique topics cannot grow memory (NATS `slCacheMax`).
    public let cacheCapacity: Int
    /// Number of (pattern, value) pairs held.
    public private(set) var count = 0
    /// Changes on every insert and remove, for callers that cache results.
    public private(set) var generation: UInt64 = 0

    public init(cacheCapacity: Int = 1024) {
        precondition(cacheCapacity >= 0, "cacheCapacity must not be negative")
        self.cacheCapacity = cacheCapacity
    }

    /// Adds `value` under `pattern`; adding the same pair twice holds it once.
    public mutating func insert(_ pattern: TopicPattern, _ value: Value) {
        let tokens = pattern.name.split(separator: ".", omittingEmptySubsequences: false)
        if Self.insert(value, tokens: tokens[...], into: &root) {
            count += 1
            invalidate()
        }
    }

    /// Removes the pair; returns false when it was not there.
    @discardableResult
    public mutating func remove(_ pattern: TopicPattern, _ value: Value) -> Bool {
        let tokens = pattern.name.split(separator: ".", omittingEmptySubsequences: false)
        guard Self.remove(value, tokens: tokens[...], from: &root) else { return false }
        count -= 1
        invalidate()
        return true
    }

    /// The values whose pattern matches `topic`, each once, through the cache.
    public mutating func match(_ topic: Topic) -> [Value] {
        if let hit = cache[topic.name] { return hit }
        let result = matchUncached(topic)
        if cacheCapacity > 0 {
            if cache.count >= cacheCapacity, let victim = cache.keys.first {
                cache.removeValue(forKey: victim)
            }
            cache[topic.name] = result
        }
        return result
    }

    /// The values whose pattern matches `topic`, each once, walking the trie.
    public func matchUncached(_ topic: Topic) -> [Value] {
        let tokens = topic.name.split(separator: ".", omittingEmptySubsequences: false)
        var found: [Value] = []
        var seen: Set<Value>? = nil
        Self.collect(tokens: tokens[...], node: root, into: &found, seen: &seen)
        return found
    }

    /// Topics currently in the match cache (never more than `cacheCapacity`).
    public var cachedTopicCount: Int { cache.count }

    /// True when no pattern is held.
    public var isEmpty: Bool { count == 0 }

    private mutating func invalidate() {
        generation &+= 1
        if !cache.isEmpty { cache.removeAll(keepingCapacity: true) }
    }

    private static func insert(_ value: Value, tokens: ArraySlice<Substring>, into node: inout Node) -> Bool {
        guard let first = tokens.first else { return node.values.insert(value).inserted }
        return insert(value, tokens: tokens.dropFirst(), into: &node.children[first, default: Node()])
    }

    private static func remove(_ value: Value, tokens: ArraySlice<Substring>, from node: inout Node) -> Bool {
        guard let first = tokens.first else { return node.values.remove(value) != nil }
        guard node.children[first] != nil else { return false }
        let removed = remove(value, tokens: tokens.dropFirst(), from: &node.children[first]!)
        if removed, node.children[first]!.isEmpty { node.children[first] = nil }
        return removed
    }

    private static func collect(
        tokens: ArraySlice<Substring>, node: Node, into found: inout [Value], seen: inout Set<Value>?
    ) {
        guard let first = tokens.first else {
            add(node.values, to: &found, seen: &seen)
            return
        }
        // `>` matches this token and everything after it: one or more tokens.
        if let rest = node.children[">"] { add(rest.values, to: &found, seen: &seen) }
        if let single = node.children["*"] {
            collect(tokens: tokens.dropFirst(), node: single, into: &found, seen: &seen)
        }
        if let literal = node.children[first] {
            collect(tokens: tokens.dropFirst(), node: literal, into: &found, seen: &seen)
        }
    }

    private static func add(_ values: Set<Value>, to found: inout [Value], seen: inout Set<Value>?) {
        guard !values.isEmpty else { return }
        if found.isEmpty {
            found.append(contentsOf: values)
            return
        }
        // A second matching pattern can carry a value already found (one
        // subscription with `a.*` and `a.>`): deliver it once.
        if seen == nil { seen = Set(found) }
        for value in values where seen!.insert(value).inserted { found.append(value) }
    }
}
