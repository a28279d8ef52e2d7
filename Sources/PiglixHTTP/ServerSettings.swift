import PiglixAuth
import PiglixBroker
import PiglixCluster
import PiglixWire

/// Every bound of the HTTP front end, with the broker's, in one value built
/// once (from flags and `PIGLIX_*` variables) and validated.
public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); `onServerRunning` reports it.
    public var port = 8080
    public var broker = BrokerSettings()
    /// An idle subscribe stream gets a `heartbeat` record this often.
    public var heartbeatInterval = Duration.seconds(15)
    /// Batching of subscribe streams: the default and the most a subscriber
    /// may ask for with `?batch_bytes=` / `?linger_ms=`.
    public var batchBytesDefault = 64 * 1024
    public var batchBytesMin = 1024
    public var batchBytesMax = 1024 * 1024
    public var lingerDefault = Duration.zero
    public var lingerMax = Duration.milliseconds(1000)
    /// A `/v1/publish` request with a `Content-Length` is a batch, read whole:
    /// most bytes on the wire, and most bytes once decompressed.
    public var batchRequestBytesMax = 16 << 20
    public var decompressedBytesMax = 64 << 20
    /// A streaming publish in a cluster keeps reading its body while earlier
    /// batches wait for their level, up to this many records or payload bytes
    /// without an ack; then it stops reading (HTTP/2 flow control slows the
    /// publisher) until acks go out.
    public var publishInFlightRecordsMax = 8192
    public var publishInFlightBytesMax = 8 << 20
    /// A `/v1/publish` request ends after this many records refused for what
    /// they are (malformed, bad topic, oversize), with one final error ack:
    /// a body of junk cannot make the node write an ack per junk line.
    public var errorAcksMax = 100
    /// From accept (or a kept-alive HTTP/1.1 connection's next first byte)
    /// to a complete request head (HTTP/1.1) or connection preface (HTTP/2).
    public var requestHeadTimeout = Duration.seconds(10)
    /// A connection with no open request or stream and no traffic for this
    /// long is closed (HTTP/2 with GOAWAY). Subscriptions keep theirs open.
    public var idleTimeout = Duration.seconds(300)
    /// Open connections from one client address; more are closed at accept. 0: no limit.
    public var connectionsPerAddressMax = 256
    /// Memory for the compressors of `Accept-Encoding` subscribe streams, node-wide.
    public var compressionMemoryBytes = 64 << 20
    /// Concurrent streams of one HTTP/2 connection (advertised in SETTINGS);
    /// a stream past it is refused with RST_STREAM REFUSED_STREAM.
    public var http2StreamsMax = 100
    /// How long a graceful shutdown waits for streams to end before it cuts them.
    public var shutdownGracePeriod = Duration.seconds(10)
    /// Cluster membership (`--cluster-listen`, `--seeds`); nil: a single node.
    public var cluster: ClusterSettings?
    /// Bearer-token checks (`--jwt-key-file`, `--jwks-file`); nil: the node
    /// is open to anyone who reaches it.
    public var authorizer: Authorizer?
    /// `--tls-cert` and `--tls-key`: the port speaks TLS (ALPN h2 and
    /// http/1.1) instead of h2c and HTTP/1.1 in the clear.
    public var tls: TLSFiles?

    public init() {}

    /// The largest NDJSON line or publish frame body a stream may carry: a
    /// payload at the limit, base64-encoded, plus room for topic and headers.
    public var recordBytesMax: Int { broker.messageBytesMax / 3 * 4 + 64 * 1024 }

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public func validate() throws {
        try broker.validate()
        try cluster?.validate()
        try cluster?.validateSizes(applicationMessageBytesMax: broker.messageBytesMax)
        if port < 0 || port > 65535 { throw Invalid(description: "port \(port) is not 0 to 65535") }
        if heartbeatInterval <= .zero { throw Invalid(description: "heartbeat interval must be positive") }
        if batchBytesMin <= 0 || batchBytesDefault < batchBytesMin || batchBytesDefault > batchBytesMax {
            throw Invalid(description: "batch bytes default \(batchBytesDefault) must lie in \(batchBytesMin)...\(batchBytesMax)")
        }
        if lingerDefault < .zero || lingerDefault > lingerMax {
            throw Invalid(description: "linger default must lie in 0...\(lingerMax)")
        }
        if shutdownGracePeriod < .zero { throw Invalid(description: "shutdown grace period must not be negative") }
        if publishInFlightRecordsMax <= 0 || publishInFlightBytesMax <= 0 {
            throw Invalid(description: "publish in-flight limits must be positive")
        }
        if requestHeadTimeout <= .zero || idleTimeout <= .zero {
            throw Invalid(description: "request head timeout and idle timeout must be positive")
        }
        if connectionsPerAddressMax < 0 { throw Invalid(description: "connections per address must not be negative (0: no limit)") }
        let streamCost = StreamCompressor.stateBytes(windowBits: CompressionBudget.windowBits, memoryLevel: CompressionBudget.memoryLevel)
        if compressionMemoryBytes < streamCost {
            throw Invalid(description: "compression memory (\(compressionMemoryBytes)) must hold at least one compressed stream (\(streamCost) bytes)")
        }
        if http2StreamsMax <= 0 { throw Invalid(description: "HTTP/2 streams per connection must be positive") }
        if errorAcksMax <= 0 { throw Invalid(description: "error acks per request must be positive") }
        if batchRequestBytesMax <= 0 || decompressedBytesMax <= 0 {
            throw Invalid(description: "request size limits must be positive")
        }
    }
}
