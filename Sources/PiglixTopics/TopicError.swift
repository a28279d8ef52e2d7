/// Why a topic or pattern name was rejected. Token indexes count from 1, as a
/// person reading `a..b` would ("token 2 is empty").
public enum TopicError: Error, Hashable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(bytes: Int, max: Int)
    case tooManyTokens(count: Int, max: Int)
    case emptyToken(index: Int)
    case tokenTooLong(index: Int, bytes: Int, max: Int)
    case invalidCharacter(index: Int, character: String)
    /// A wildcard in a topic (as opposed to a pattern).
    case wildcardInTopic(index: Int)
    /// `sen*` or `a>`: wildcards are whole tokens only.
    case partialWildcard(index: Int)
    /// `>` anywhere but the last token.
    case fullWildcardNotLast(index: Int)

    public var description: String {
        switch self {
        case .empty:
            return "topic is empty"
        case .tooLong(let bytes, let max):
            return "topic is \(bytes) bytes long, the limit is \(max)"
        case .tooManyTokens(let count, let max):
            return "topic has \(count) tokens, the limit is \(max)"
        case .emptyToken(let index):
            return "topic token \(index) is empty"
        case .tokenTooLong(let index, let bytes, let max):
            return "topic token \(index) is \(bytes) bytes long, the limit is \(max)"
        case .invalidCharacter(let index, let character):
            return "topic token \(index) has the invalid character \(character); allowed are ASCII letters, digits and _ - : @ ~"
        case .wildcardInTopic(let index):
            return "topic token \(index) is a wildcard; wildcards are allowed in subscription patterns, not in topics"
        case .partialWildcard(let index):
            return "topic token \(index) mixes a wildcard with other characters; * and > must be whole tokens"
        case .fullWildcardNotLast(let index):
            return "topic token \(index) is >, which is allowed only as the last token"
        }
    }
}
