import PiglixTopics
import XCTest

final class TopicTests: XCTestCase {
    func testValidTopicsParse() throws {
        for name in ["a", "sensors.paris.xyz.temp", "A-b_c:d@e~f.9", "$piglix.views"] {
            XCTAssertEqual(try Topic(name).name, name)
        }
    }

    func testEmptyTokensAreRejectedWithTheirIndex() {
        XCTAssertThrowsError(try Topic("")) { XCTAssertEqual($0 as? TopicError, .empty) }
        XCTAssertThrowsError(try Topic("a..b")) { XCTAssertEqual($0 as? TopicError, .emptyToken(index: 2)) }
        XCTAssertThrowsError(try Topic(".a")) { XCTAssertEqual($0 as? TopicError, .emptyToken(index: 1)) }
        XCTAssertThrowsError(try Topic("a.")) { XCTAssertEqual($0 as? TopicError, .emptyToken(index: 2)) }
        XCTAssertEqual(TopicError.emptyToken(index: 2).description, "topic token 2 is empty")
    }

    func testInvalidCharactersNameTokenAndCharacter() {
        XCTAssertThrowsError(try Topic("a.b c")) {
            XCTAssertEqual($0 as? TopicError, .invalidCharacter(index: 2, character: "' ' (space)"))
        }
        XCTAssertThrowsError(try Topic("a.é")) {
            guard case .invalidCharacter(2, _)? = $0 as? TopicError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try Topic("a.$b")) {
            guard case .invalidCharacter(2, _)? = $0 as? TopicError else { return XCTFail("\($0)") }
        }
    }

    func testWildcardsAreNotTopics() {
        XCTAssertThrowsError(try Topic("a.*")) { XCTAssertEqual($0 as? TopicError, .wildcardInTopic(index: 2)) }
        XCTAssertThrowsError(try Topic(">")) { XCTAssertEqual($0 as? TopicError, .wildcardInTopic(index: 1)) }
    }

    func testWildcardsAreWholeTokensOnly() {
        for (name, index) in [("sen*", 1), ("a.*b", 2), ("a.b>", 2), ("a.>>", 2), ("**", 1)] {
            XCTAssertThrowsError(try TopicPattern(name), name) {
                XCTAssertEqual($0 as? TopicError, .partialWildcard(index: index), name)
            }
        }
    }

    func testFullWildcardOnlyLast() {
        XCTAssertThrowsError(try TopicPattern("a.>.b")) { XCTAssertEqual($0 as? TopicError, .fullWildcardNotLast(index: 2)) }
        XCTAssertNoThrow(try TopicPattern("a.*.>"))
        XCTAssertNoThrow(try TopicPattern(">"))
    }

    func testLengthAndTokenLimits() {
        let limits = TopicLimits(tokensMax: 3, bytesMax: 20, tokenBytesMax: 5)
        XCTAssertNoThrow(try Topic("a.b.c", limits: limits))
        XCTAssertThrowsError(try Topic("a.b.c.d", limits: limits)) { XCTAssertEqual($0 as? TopicError, .tooManyTokens(count: 4, max: 3)) }
        XCTAssertThrowsError(try Topic("abcdef", limits: limits)) {
            XCTAssertEqual($0 as? TopicError, .tokenTooLong(index: 1, bytes: 6, max: 5))
        }
        XCTAssertThrowsError(try Topic(String(repeating: "a.", count: 10) + "a", limits: TopicLimits(tokensMax: 99, bytesMax: 20))) {
            XCTAssertEqual($0 as? TopicError, .tooLong(bytes: 21, max: 20))
        }
        // Defaults: 16 tokens, 255 bytes, 64 bytes a token.
        XCTAssertNoThrow(try Topic(Array(repeating: "t", count: 16).joined(separator: ".")))
        XCTAssertThrowsError(try Topic(Array(repeating: "t", count: 17).joined(separator: ".")))
        XCTAssertNoThrow(try Topic(String(repeating: "x", count: 64)))
        XCTAssertThrowsError(try Topic(String(repeating: "x", count: 65)))
    }

    func testReservedTopics() throws {
        XCTAssertTrue(try Topic("$piglix.views").isReserved)
        XCTAssertFalse(try Topic("piglix.views").isReserved)
        XCTAssertNoThrow(try TopicPattern("$piglix.>"))
    }
}

final class PatternTrieTests: XCTestCase {
    /// Each case runs with the cache (twice, so the second answer comes from it) and without.
    private func assertMatches(_ patterns: [String], _ topic: String, _ expected: Set<String>, file: StaticString = #filePath, line: UInt = #line) throws {
        var trie = PatternTrie<String>(cacheCapacity: 8)
        for pattern in patterns { trie.insert(try TopicPattern(pattern), pattern) }
        let parsed = try Topic(topic)
        XCTAssertEqual(Set(trie.matchUncached(parsed)), expected, "uncached", file: file, line: line)
        XCTAssertEqual(Set(trie.match(parsed)), expected, "first", file: file, line: line)
        XCTAssertEqual(Set(trie.match(parsed)), expected, "cached", file: file, line: line)
        for pattern in patterns {
            XCTAssertEqual(try TopicPattern(pattern).matches(parsed), expected.contains(pattern), "direct \(pattern)", file: file, line: line)
        }
    }

    func testStarMatchesExactlyOneToken() throws {
        try assertMatches(["a.*"], "a.b", ["a.*"])
        try assertMatches(["a.*"], "a", [])
        try assertMatches(["a.*"], "a.b.c", [])
        try assertMatches(["*.b"], "a.b", ["*.b"])
        try assertMatches(["*"], "a", ["*"])
    }

    func testFullWildcardMatchesOneOrMoreTrailingTokens() throws {
        try assertMatches(["foo.>"], "foo", [])
        try assertMatches(["foo.>"], "foo.bar", ["foo.>"])
        try assertMatches(["foo.>"], "foo.bar.baz", ["foo.>"])
        try assertMatches([">"], "a.b.c", [">"])
    }

    func testOverlappingPatternsAllMatch() throws {
        let patterns = ["sensors.*.temp", "sensors.>", "sensors.paris.temp", "*.paris.*", "other.>"]
        try assertMatches(patterns, "sensors.paris.temp", ["sensors.*.temp", "sensors.>", "sensors.paris.temp", "*.paris.*"])
        try assertMatches(patterns, "sensors.lyon.hum", ["sensors.>"])
    }

    func testValueUnderTwoMatchingPatternsIsReturnedOnce() throws {
        var trie = PatternTrie<Int>()
        trie.insert(try TopicPattern("a.*"), 1)
        trie.insert(try TopicPattern("a.>"), 1)
        trie.insert(try TopicPattern("a.b"), 2)
        XCTAssertEqual(trie.match(try Topic("a.b")).sorted(), [1, 2])
    }

    func testRemoveInvalidatesCacheAndPrunes() throws {
        var trie = PatternTrie<Int>(cacheCapacity: 4)
        let pattern = try TopicPattern("a.*")
        trie.insert(pattern, 7)
        XCTAssertEqual(trie.match(try Topic("a.b")), [7])
        XCTAssertTrue(trie.remove(pattern, 7))
        XCTAssertFalse(trie.remove(pattern, 7))
        XCTAssertEqual(trie.match(try Topic("a.b")), [])
        XCTAssertTrue(trie.isEmpty)
    }

    func testCacheStaysWithinItsBound() throws {
        var trie = PatternTrie<Int>(cacheCapacity: 2)
        trie.insert(try TopicPattern("t.>"), 1)
        for index in 0..<100 { XCTAssertEqual(trie.match(try Topic("t.\(index)")), [1]) }
        XCTAssertLessThanOrEqual(trie.cachedTopicCount, 2)
    }
}
