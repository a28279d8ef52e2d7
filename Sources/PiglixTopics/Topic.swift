/// One token of a parsed pattern.
public enum PatternToken: Hashable, Sendable {
    case literal(String)
    /// `*`: exactly one token.
    case single
    /// `>`: one or more trailing tokens.
    case rest
}

/// A validated topic name: dot-separated literal tokens (docs/protocol.md, "Topics and patterns").
public struct Topic: Hashable, Sendable, CustomStringConvertible {
    public let name: String

    public init(_ name: String, limits: TopicLimits = .default) throws(TopicError) {
        try TopicSyntax.validate(name, limits: limits, allowWildcards: false)
        self.name = name
    }

    /// Topics beginning with `$` are the broker's own; clients may not publish there.
    public var isReserved: Bool { name.utf8.first == UInt8(ascii: "$") }

    public var tokens: [Substring] { name.split(separator: ".", omittingEmptySubsequences: false) }

    public var description: String { name }
}

/// A validated subscription pattern: a topic whose tokens may be `*` (exactly
/// one token) or, last only, `>` (one or more tokens). NATS semantics.
public struct TopicPattern: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let tokens: [PatternToken]

    public init(_ name: String, limits: TopicLimits = .default) throws(TopicError) {
        try TopicSyntax.validate(name, limits: limits, allowWildcards: true)
        self.name = name
        self.tokens = name.split(separator: ".", omittingEmptySubsequences: false).map { token in
            switch token {
            case "*": return .single
            case ">": return .rest
            default: return .literal(String(token))
            }
        }
    }

    /// True when the pattern has no wildcard, i.e. it names exactly one topic.
    public var isLiteral: Bool {
        !tokens.contains { if case .literal = $0 { return false } else { return true } }
    }

    /// Direct match without a trie; the trie is the fast path for many patterns.
    public func matches(_ topic: Topic) -> Bool {
        var index = 0
        for token in topic.name.split(separator: ".", omittingEmptySubsequences: false) {
            guard index < tokens.count else { return false }
            switch tokens[index] {
            case .rest: return true
            case .single: break
            case .literal(let literal): if literal != token { return false }
            }
            index += 1
        }
        return index == tokens.count
    }

    /// Whether every topic `other` matches, this pattern matches too (an
    /// authorization grant covering a requested pattern). `>` covers one or
    /// more tokens, `*` one token or a `*`; `other`'s `>` is covered only
    /// by a `>`.
    public func covers(_ other: TopicPattern) -> Bool {
        for (index, token) in other.tokens.enumerated() {
            guard index < tokens.count else { return false }
            switch (tokens[index], token) {
            case (.rest, _): return true
            case (.single, .literal), (.single, .single): continue
            case (.literal(let mine), .literal(let theirs)) where mine == theirs: continue
            default: return false
            }
        }
        return other.tokens.count == tokens.count
    }

    public var description: String { name }
}

/// The single validator for topics and patterns, one pass over UTF-8 bytes.
enum TopicSyntax {
    static func validate(_ name: String, limits: TopicLimits, allowWildcards: Bool) throws(TopicError) {
        let utf8 = name.utf8
        if utf8.isEmpty { throw .empty }
        if utf8.count > limits.bytesMax { throw .tooLong(bytes: utf8.count, max: limits.bytesMax) }
        var tokenIndex = 1
        var tokenBytes = 0
        var tokenHasWildcard = false
        var tokenCount = 1
        for byte in utf8 where byte == UInt8(ascii: ".") { _ = byte; tokenCount += 1 }
        if tokenCount > limits.tokensMax { throw .tooManyTokens(count: tokenCount, max: limits.tokensMax) }
        var position = 0

        func finishToken(last: Bool) throws(TopicError) {
            if tokenBytes == 0 { throw .emptyToken(index: tokenIndex) }
            if tokenBytes > limits.tokenBytesMax {
                throw .tokenTooLong(index: tokenIndex, bytes: tokenBytes, max: limits.tokenBytesMax)
            }
            if tokenHasWildcard {
                if tokenBytes != 1 { throw .partialWildcard(index: tokenIndex) }
            }
        }

        var previous: UInt8 = 0
        for byte in utf8 {
            defer { position += 1; previous = byte }
            if byte == UInt8(ascii: ".") {
                try finishToken(last: false)
                if tokenHasWildcard && previous == UInt8(ascii: ">") { throw .fullWildcardNotLast(index: tokenIndex) }
                tokenIndex += 1
                tokenBytes = 0
                tokenHasWildcard = false
                continue
            }
            tokenBytes += 1
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"),
                UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "~"):
                if tokenHasWildcard { throw .partialWildcard(index: tokenIndex) }
            case UInt8(ascii: "$") where position == 0:
                // Reserved broker topics such as `$piglix.views`.
                break
            case UInt8(ascii: "*"), UInt8(ascii: ">"):
                if !allowWildcards { throw .wildcardInTopic(index: tokenIndex) }
                if tokenBytes != 1 { throw .partialWildcard(index: tokenIndex) }
                tokenHasWildcard = true
            default:
                throw .invalidCharacter(index: tokenIndex, character: Self.show(byte))
            }
        }
        try finishToken(last: true)
    }

    static func show(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        if byte == 0x20 { return "' ' (space)" }
        let hex = String(byte, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}
