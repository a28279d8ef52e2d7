import XCTest

@testable import PiglixGroups

/// The idempotence table (docs/patterns.md, "Idempotent publish"): the
/// window per producer, least-recently-used eviction of producers, refusal
/// below the window, and the merge a joiner does with a checkpoint.
final class IdempotenceTableTests: XCTestCase {
    typealias Table = IdempotenceTable<String>

    func test_admit_firstIsNew_retryIsDuplicateOfTheOriginal() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 8))
        XCTAssertEqual(t.admit(producer: "p", sequence: 1, original: "a"), .new)
        XCTAssertEqual(t.admit(producer: "p", sequence: 1, original: "b"), .duplicate("a"))
        XCTAssertEqual(t.admit(producer: "q", sequence: 1, original: "c"), .new, "producers are independent")
        XCTAssertEqual(t.lookup(producer: "p", sequence: 1), .duplicate("a"))
        XCTAssertEqual(t.lookup(producer: "p", sequence: 2), .new)
        XCTAssertEqual(t.lookup(producer: "nobody", sequence: 9), .new)
    }

    /// Seed 1202328: a record the primary never delivered (its origin was
    /// excluded with it) was in a joiner's table through its checkpoint, and
    /// the joiner took the producer's retry for a duplicate of it. Forgotten,
    /// the retry is new, and the producer's highest goes back.
    func test_forget_aPhantomOriginalMakesItsRetryNew_I2() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 8))
        XCTAssertEqual(t.admit(producer: "p", sequence: 1, original: "a"), .new)
        XCTAssertEqual(t.admit(producer: "p", sequence: 2, original: "phantom"), .new)
        XCTAssertEqual(t.admit(producer: "q", sequence: 1, original: "phantom"), .new)
        t.forget { $0 == "phantom" }
        XCTAssertEqual(t.lookup(producer: "p", sequence: 2), .new)
        XCTAssertEqual(t.lookup(producer: "p", sequence: 1), .duplicate("a"), "the others stay")
        XCTAssertEqual(t.producerCount, 1, "a producer left with nothing is gone")
        XCTAssertEqual(t.admit(producer: "p", sequence: 2, original: "retry"), .new)
        XCTAssertEqual(t.lookup(producer: "p", sequence: 2), .duplicate("retry"))
    }

    func test_window_sequencesOlderThanTheWindowAreRefused_insideItGapsMayStillBeFilled() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 8))
        XCTAssertEqual(t.admit(producer: "p", sequence: 10, original: "10"), .new)
        // Window after 10: 7...10. 6 is older than the window.
        XCTAssertEqual(t.admit(producer: "p", sequence: 6, original: "6"), .tooOld(highest: 10))
        XCTAssertEqual(t.admit(producer: "p", sequence: 7, original: "7"), .new, "inside the window, never seen: new")
        XCTAssertEqual(t.admit(producer: "p", sequence: 7, original: "x"), .duplicate("7"))
        XCTAssertEqual(t.admit(producer: "p", sequence: 12, original: "12"), .new)
        // Window now 9...12: 7 is older than it although it was delivered.
        XCTAssertEqual(t.admit(producer: "p", sequence: 7, original: "x"), .tooOld(highest: 12))
        XCTAssertEqual(t.admit(producer: "p", sequence: 10, original: "x"), .duplicate("10"))
    }

    /// A release after a checkpoint asks what was recorded at the live
    /// delivery, which the window may have passed since (seed 153179).
    func test_remembered_theOriginalBelowTheWindowUntilThePrune() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 8))
        XCTAssertEqual(t.admit(producer: "p", sequence: 3, original: "3"), .new)
        XCTAssertEqual(t.admit(producer: "p", sequence: 7, original: "7"), .new)
        XCTAssertEqual(t.lookup(producer: "p", sequence: 3), .tooOld(highest: 7))
        XCTAssertEqual(t.remembered(producer: "p", sequence: 3), "3")
        XCTAssertNil(t.remembered(producer: "p", sequence: 4))
        XCTAssertNil(t.remembered(producer: "q", sequence: 3))
    }

    func test_window_memoryIsBoundedToTwoWindowsPerProducer() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 16, producersMax: 8))
        for s in 1...1000 { XCTAssertEqual(t.admit(producer: "p", sequence: UInt64(s), original: "\(s)"), .new) }
        XCTAssertLessThan(t.entryCount, 32)
        for s in 985...1000 { XCTAssertEqual(t.lookup(producer: "p", sequence: UInt64(s)), .duplicate("\(s)")) }
        XCTAssertEqual(t.lookup(producer: "p", sequence: 984), .tooOld(highest: 1000))
    }

    func test_producersMax_evictsTheLeastRecentlyUsedProducer_whoseRetriesAreThenNew() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 2))
        _ = t.admit(producer: "a", sequence: 1, original: "a1")
        _ = t.admit(producer: "b", sequence: 1, original: "b1")
        _ = t.admit(producer: "a", sequence: 2, original: "a2")  // a used after b
        _ = t.admit(producer: "c", sequence: 1, original: "c1")  // evicts b
        XCTAssertEqual(t.evictions, 1)
        XCTAssertEqual(t.producerCount, 2)
        XCTAssertEqual(t.lookup(producer: "a", sequence: 1), .duplicate("a1"))
        XCTAssertEqual(t.lookup(producer: "b", sequence: 1), .new, "a forgotten producer's retry is new (documented)")
        XCTAssertEqual(t.lookup(producer: "c", sequence: 1), .duplicate("c1"))
    }

    func test_duplicatesAndRefusals_doNotChangeTheTable() {
        var t = Table(limits: IdempotenceLimits(windowSequences: 4, producersMax: 2))
        _ = t.admit(producer: "a", sequence: 1, original: "a1")
        _ = t.admit(producer: "b", sequence: 1, original: "b1")
        let before = t.snapshot()
        _ = t.admit(producer: "a", sequence: 1, original: "again")
        XCTAssertEqual(t.snapshot(), before)
        _ = t.admit(producer: "c", sequence: 1, original: "c1")  // evicts a, the least recently admitted
        XCTAssertEqual(t.lookup(producer: "a", sequence: 1), .new)
        XCTAssertEqual(t.lookup(producer: "b", sequence: 1), .duplicate("b1"))
    }

    /// Two members fed the same deliveries decide the same, and a joiner that
    /// takes a provider's snapshot at a cut and admits again what it saw after
    /// the cut ends with the provider's table.
    func test_merge_providerSnapshotPlusOwnAdmissionsAfterTheCut_equalsTheProvidersTable() {
        let limits = IdempotenceLimits(windowSequences: 8, producersMax: 3)
        var provider = Table(limits: limits)
        var joiner = Table(limits: limits)
        let before: [(String, UInt64)] = [("a", 1), ("b", 1), ("a", 2), ("c", 5), ("d", 1), ("a", 3)]
        for (i, (p, s)) in before.enumerated() { _ = provider.admit(producer: p, sequence: s, original: "early\(i)") }
        // The joiner saw only part of what came before the cut (it joined late)…
        _ = joiner.admit(producer: "a", sequence: 3, original: "early5")
        _ = joiner.admit(producer: "z", sequence: 9, original: "early-z")  // before the cut; the provider evicted it
        let snapshot = provider.snapshot()
        // …and after the cut both see the same deliveries.
        let after: [(String, UInt64)] = [("a", 1), ("e", 1), ("b", 2), ("a", 4)]
        for (i, (p, s)) in after.enumerated() {
            let x = provider.admit(producer: p, sequence: s, original: "late\(i)")
            _ = joiner.admit(producer: p, sequence: s, original: "late\(i)")
            _ = x
        }
        joiner.merge(snapshot) { $0.hasPrefix("late") }
        XCTAssertEqual(Set(joiner.snapshot().map(\.producer)), Set(provider.snapshot().map(\.producer)))
        for p in ["a", "b", "c", "d", "e", "z"] {
            for s in UInt64(1)...9 {
                XCTAssertEqual(joiner.lookup(producer: p, sequence: s), provider.lookup(producer: p, sequence: s), "\(p) \(s)")
            }
        }
        // And they go on deciding alike.
        let next: [(String, UInt64)] = [("z", 9), ("a", 1), ("f", 1), ("c", 5)]
        for (i, (p, s)) in next.enumerated() {
            XCTAssertEqual(
                joiner.admit(producer: p, sequence: s, original: "next\(i)"), provider.admit(producer: p, sequence: s, original: "next\(i)"))
        }
    }
}
