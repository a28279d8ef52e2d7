/// Bounds on topic and pattern names. Built once from the node's settings.
public struct TopicLimits: Hashable, Sendable {
    /// Most tokens in one topic or pattern.
    public var tokensMax: Int
    /// Most bytes in a whole topic or pattern, dots included.
    public var bytesMax: Int
    /// Most bytes in one token.
    public var tokenBytesMax: Int

    public init(tokensMax: Int = 16, bytesMax: Int = 255, tokenBytesMax: Int = 64) {
        self.tokensMax = tokensMax
        self.bytesMax = bytesMax
        self.tokenBytesMax = tokenBytesMax
    }

    /// The defaults of docs/protocol.md ("Topics and patterns"): 16 tokens, 255 bytes, 64 bytes a token.
    public static let `default` = TopicLimits()
}
