import Foundation
import ArgumentParser
import Logging
import Metrics
import PiglixAuth
import PiglixBroker
import PiglixCluster
import PiglixHTTP
import PiglixTopics
import Prometheus

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Piglix node.",
        discussion: """
            With no flags: one node, HTTP/2 (prior knowledge) and HTTP/1.1 on 127.0.0.1:8080, no cluster. \
            Each flag falls back to the environment variable named in its help, then to its default. \
            Sizes are in bytes. Stop with SIGTERM or SIGINT: subscribers get an `end` record.
            """)

    @Option(help: "This node's id in views and /v1/cluster. [env PIGLIX_NODE_ID, default n1]")
    var nodeId: String?
    @Option(help: "HTTP listen address host:port. [env PIGLIX_LISTEN, default 127.0.0.1:8080]")
    var listen: String?
    @Option(help: "Cluster listen address host:port; turns cluster mode on (seeds default to this address alone). [env PIGLIX_CLUSTER_LISTEN]")
    var clusterListen: String?
    @Option(help: "Comma-separated seeds host:port, this node's own address may be among them; a DNS name resolving to several addresses (a Kubernetes headless service) is dialed at each one. [env PIGLIX_SEEDS]")
    var seeds: String?
    @Option(help: "Address peers dial back, host:port, when --cluster-listen is a wildcard like 0.0.0.0:7000. [env PIGLIX_CLUSTER_ADVERTISE, default the cluster listen address]")
    var clusterAdvertise: String?
    @Option(help: "Heartbeat period between nodes, ms. [env PIGLIX_CLUSTER_HEARTBEAT_MS, default 100]")
    var clusterHeartbeatMs: Int?
    @Option(help: "A node silent this long is suspected and a view change starts, ms (at least 3 heartbeats). [env PIGLIX_SUSPICION_TIMEOUT_MS, default 1000]")
    var suspicionTimeoutMs: Int?
    @Option(help: "zlib-compress inter-node frames of at least this many bytes; 0 turns it off. [env PIGLIX_CLUSTER_COMPRESS_BYTES, default 0]")
    var clusterCompressBytes: Int?
    @Option(help: "How long a node that hears of no cluster waits before the one with the smallest --node-id forms the first view, ms. [env PIGLIX_BOOTSTRAP_WAIT_MS, default 2 suspicion timeouts]")
    var bootstrapWaitMs: Int?
    @Option(help: "File of the shared cluster key (one key per line, at least 16 bytes; the first proves this node, any is accepted from a peer). Without it the cluster port admits anyone. [env PIGLIX_CLUSTER_KEY_FILE]")
    var clusterKeyFile: String?
    @Option(help: "Directory where a cluster node keeps its flush votes (a small file per node id), so that a majority restarted together forms a primary view again; give each node its own, on a volume that outlives it. [env PIGLIX_DATA_DIR, default piglix-data in the working directory]")
    var dataDir: String?
    @Option(help: "PEM certificate chain: the port speaks TLS, ALPN h2 and http/1.1 (h2c and plain HTTP/1.1 without it). Reloaded on SIGHUP. Needs --tls-key. [env PIGLIX_TLS_CERT]")
    var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert. Reloaded on SIGHUP. [env PIGLIX_TLS_KEY]")
    var tlsKey: String?
    @Option(help: "Require bearer tokens (JWT) verified with this key: an HS256 secret of at least 32 bytes, or a PEM public key (EC P-256: ES256; RSA: RS256). Without it or --jwks-file anyone who reaches the port may publish and subscribe. Make tokens with `piglix token`. [env PIGLIX_JWT_KEY_FILE]")
    var jwtKeyFile: String?
    @Option(help: "Require bearer tokens verified with the keys of this JSON Web Key Set file (tokens name their key with `kid`). [env PIGLIX_JWKS_FILE]")
    var jwksFile: String?

    @Option(help: "Largest message payload. [env PIGLIX_MAX_MESSAGE_BYTES, default 1048576]")
    var maxMessageBytes: Int?
    @Option(help: "Most tokens in a topic or pattern. [env PIGLIX_MAX_TOPIC_TOKENS, default 16]")
    var maxTopicTokens: Int?
    @Option(help: "Most bytes in a topic or pattern. [env PIGLIX_MAX_TOPIC_BYTES, default 255]")
    var maxTopicBytes: Int?
    @Option(help: "Retained messages per topic, for resume. [env PIGLIX_RETAIN_MESSAGES_PER_TOPIC, default 1000]")
    var retainMessagesPerTopic: Int?
    @Option(help: "Retained bytes per topic. [env PIGLIX_RETAIN_BYTES_PER_TOPIC, default 4194304]")
    var retainBytesPerTopic: Int?
    @Option(help: "Retained messages over all topics. [env PIGLIX_RETAIN_MESSAGES, default 1000000]")
    var retainMessages: Int?
    @Option(help: "Retained bytes over all topics. [env PIGLIX_RETAIN_BYTES, default 268435456]")
    var retainBytes: Int?
    @Option(help: "Messages one subscriber may have queued. [env PIGLIX_QUEUE_MESSAGES, default 10000]")
    var queueMessages: Int?
    @Option(help: "Bytes one subscriber may have queued. [env PIGLIX_QUEUE_BYTES, default 16777216]")
    var queueBytes: Int?
    @Option(help: "Default slow-consumer policy, drop-oldest or disconnect; a subscriber picks with ?overflow=. [env PIGLIX_OVERFLOW, default drop-oldest]")
    var overflow: String?
    @Option(help: "Most open subscriptions on this node (more get 429). [env PIGLIX_MAX_SUBSCRIPTIONS, default 10000]")
    var maxSubscriptions: Int?
    @Option(help: "Most patterns in one subscription (more get 400). [env PIGLIX_MAX_PATTERNS, default 16]")
    var maxPatterns: Int?
    @Option(help: "Most locks held or waited for in the cluster (more get 429; every node needs the same). [env PIGLIX_MAX_LOCKS, default 10000]")
    var maxLocks: Int?
    @Option(help: "Most requests waiting for one lock (more get 429; every node needs the same). [env PIGLIX_MAX_LOCK_WAITERS, default 100]")
    var maxLockWaiters: Int?
    @Option(help: "Most open lock streams on this node (more get 503). [env PIGLIX_MAX_LOCK_STREAMS, default 10000]")
    var maxLockStreams: Int?
    @Option(help: "Work queues: unacked messages one queue holds (assigned or waiting); past it a message is not queued (piglix_queue_overflow_total). The same on every node of a cluster. [env PIGLIX_QUEUE_UNACKED_MAX, default 10000]")
    var queueUnackedMax: Int?
    @Option(help: "Work queues: unacked messages one member holds; past it messages go to the next member with room or wait in the queue's backlog. The same on every node of a cluster. [env PIGLIX_QUEUE_IN_FLIGHT_MAX, default 256]")
    var queueInFlightMax: Int?
    @Option(help: "Heartbeat interval of idle subscribe streams, ms. [env PIGLIX_HEARTBEAT_MS, default 15000]")
    var heartbeatMs: Int?
    @Option(help: "Default batch size of subscribe streams; ?batch_bytes= may ask for 1024 to 1048576. [env PIGLIX_BATCH_BYTES, default 65536]")
    var batchBytes: Int?
    @Option(help: "Default linger of subscribe streams, ms; ?linger_ms= may ask for 0 to 1000. [env PIGLIX_LINGER_MS, default 0]")
    var lingerMs: Int?
    @Option(help: "Largest /v1/publish batch body (with Content-Length) on the wire. [env PIGLIX_MAX_BATCH_BYTES, default 16777216]")
    var maxBatchBytes: Int?
    @Option(help: "Largest batch body once decompressed; more is a 413. [env PIGLIX_MAX_DECOMPRESSED_BYTES, default 67108864]")
    var maxDecompressedBytes: Int?
    @Option(help: "Memory for the compressors of Accept-Encoding: gzip|deflate subscribe streams, node-wide (about 38 KiB a stream); past it such a subscribe gets 429. [env PIGLIX_COMPRESSION_MEMORY, default 67108864]")
    var compressionMemory: Int?
    @Option(help: "A /v1/publish request ends after this many refused records (malformed, bad topic, oversize), with one more error ack saying so. [env PIGLIX_MAX_ERROR_ACKS, default 100]")
    var maxErrorAcks: Int?
    @Option(help: "Time a client has from connecting (or, on a kept-alive HTTP/1.1 connection, from the first byte of its next request) to a complete HTTP/1.1 request head or HTTP/2 preface; then the connection is closed. A number of seconds, or with ms, s or m. [env PIGLIX_REQUEST_HEAD_TIMEOUT, default 10s]")
    var requestHeadTimeout: String?
    @Option(help: "A connection with no open request or stream and no traffic for this long is closed (HTTP/2 with GOAWAY); subscriptions are never idle. Seconds, or with ms, s or m. [env PIGLIX_IDLE_TIMEOUT, default 300s]")
    var idleTimeout: String?
    @Option(help: "Most open connections from one client address (IP); more are closed when accepted and counted in piglix_http_refused_connections_total. 0: no limit (raise it behind a proxy, whose connections share its address). [env PIGLIX_MAX_CONNECTIONS_PER_ADDRESS, default 256]")
    var maxConnectionsPerAddress: Int?
    @Option(help: "On SIGTERM/SIGINT, how long to wait for streams to end before cutting them, ms. [env PIGLIX_SHUTDOWN_GRACE_MS, default 10000]")
    var shutdownGraceMs: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [env PIGLIX_LOG_LEVEL, default info]")
    var logLevel: String?

    func settings() throws -> ServerSettings {
        var settings = ServerSettings()
        func int(_ flag: Int?, _ name: String, _ apply: (Int) -> Void) throws {
            if let flag { apply(flag); return }
            guard let text = Environment.get(name) else { return }
            guard let value = Int(text) else { throw ValidationError("\(name)=\(text) is not an integer") }
            apply(value)
        }
        func string(_ flag: String?, _ name: String) -> String? { flag ?? Environment.get(name) }
        func duration(_ flag: String?, _ option: String, _ name: String, _ apply: (Duration) -> Void) throws {
            guard let text = string(flag, name) else { return }
            guard let value = Self.parseDuration(text) else {
                throw ValidationError("--\(option) \(text) is not a duration (for example 10, 10s, 500ms or 5m)")
            }
            apply(value)
        }

        settings.broker.nodeID = string(nodeId, "PIGLIX_NODE_ID") ?? "n1"
        let listenText = string(listen, "PIGLIX_LISTEN") ?? "127.0.0.1:8080"
        guard let address = ListenAddress(listenText) else {
            throw ValidationError("--listen \(listenText) is not host:port (for example 127.0.0.1:8080 or [::1]:8080)")
        }
        settings.host = address.host
        settings.port = address.port
        let seedText = string(seeds, "PIGLIX_SEEDS")
        if let clusterText = string(clusterListen, "PIGLIX_CLUSTER_LISTEN") {
            guard let address = ListenAddress(clusterText) else {
                throw ValidationError("--cluster-listen \(clusterText) is not host:port (for example 127.0.0.1:7001 or 0.0.0.0:7000)")
            }
            let seedList = (seedText ?? clusterText).split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
            for seed in seedList where ListenAddress(seed) == nil {
                throw ValidationError("--seeds entry \(seed) is not host:port")
            }
            var cluster = ClusterSettings(
                nodeName: settings.broker.nodeID, listenHost: address.host, listenPort: address.port,
                advertiseAddress: string(clusterAdvertise, "PIGLIX_CLUSTER_ADVERTISE"), seeds: seedList)
            try int(clusterHeartbeatMs, "PIGLIX_CLUSTER_HEARTBEAT_MS") { cluster.heartbeatMilliseconds = $0 }
            try int(suspicionTimeoutMs, "PIGLIX_SUSPICION_TIMEOUT_MS") { cluster.suspicionTimeoutMilliseconds = $0 }
            try int(bootstrapWaitMs, "PIGLIX_BOOTSTRAP_WAIT_MS") { cluster.bootstrapWaitMilliseconds = $0 }
            try int(clusterCompressBytes, "PIGLIX_CLUSTER_COMPRESS_BYTES") { cluster.compressFramesAtBytes = $0 > 0 ? $0 : nil }
            cluster.dataDirectory = string(dataDir, "PIGLIX_DATA_DIR").flatMap { $0.isEmpty ? nil : $0 } ?? "piglix-data"
            if let path = string(clusterKeyFile, "PIGLIX_CLUSTER_KEY_FILE") {
                cluster.clusterKey = try Self.readClusterKey(path)
            }
            if cluster.heartbeatMilliseconds <= 0 || cluster.suspicionTimeoutMilliseconds <= 0 {
                throw ValidationError("--cluster-heartbeat-ms and --suspicion-timeout-ms must be positive")
            }
            if cluster.suspicionTimeoutMilliseconds < 3 * cluster.heartbeatMilliseconds {
                throw ValidationError(
                    "--suspicion-timeout-ms \(cluster.suspicionTimeoutMilliseconds) must be at least 3 heartbeats (\(3 * cluster.heartbeatMilliseconds) ms)")
            }
            settings.cluster = cluster
        } else if string(clusterKeyFile, "PIGLIX_CLUSTER_KEY_FILE") != nil {
            throw ValidationError("--cluster-key-file needs --cluster-listen: a single node has no cluster port to protect")
        } else if seedText != nil {
            throw ValidationError("--seeds needs --cluster-listen: give this node an address for its peers (for example --cluster-listen 127.0.0.1:7001)")
        }
        switch (string(tlsCert, "PIGLIX_TLS_CERT"), string(tlsKey, "PIGLIX_TLS_KEY")) {
        case (let cert?, let key?): settings.tls = TLSFiles(certificatePath: cert, keyPath: key)
        case (nil, nil): break
        case (_?, nil): throw ValidationError("--tls-cert needs --tls-key (the certificate's private key, PEM)")
        case (nil, _?): throw ValidationError("--tls-key needs --tls-cert (the certificate chain, PEM)")
        }
        try int(maxMessageBytes, "PIGLIX_MAX_MESSAGE_BYTES") { settings.broker.messageBytesMax = $0 }
        try int(maxTopicTokens, "PIGLIX_MAX_TOPIC_TOKENS") { settings.broker.topicLimits.tokensMax = $0 }
        try int(maxTopicBytes, "PIGLIX_MAX_TOPIC_BYTES") { settings.broker.topicLimits.bytesMax = $0 }
        try int(retainMessagesPerTopic, "PIGLIX_RETAIN_MESSAGES_PER_TOPIC") { settings.broker.retainedMessagesPerTopicMax = $0 }
        try int(retainBytesPerTopic, "PIGLIX_RETAIN_BYTES_PER_TOPIC") { settings.broker.retainedBytesPerTopicMax = $0 }
        try int(retainMessages, "PIGLIX_RETAIN_MESSAGES") { settings.broker.retainedMessagesMax = $0 }
        try int(retainBytes, "PIGLIX_RETAIN_BYTES") { settings.broker.retainedBytesMax = $0 }
        try int(queueMessages, "PIGLIX_QUEUE_MESSAGES") { settings.broker.subscriberQueueMessagesMax = $0 }
        try int(queueBytes, "PIGLIX_QUEUE_BYTES") { settings.broker.subscriberQueueBytesMax = $0 }
        if let text = string(overflow, "PIGLIX_OVERFLOW") {
            guard let policy = OverflowPolicy(rawValue: text) else {
                throw ValidationError("overflow \(text) is not one of drop-oldest, disconnect")
            }
            settings.broker.defaultOverflow = policy
        }
        try int(maxSubscriptions, "PIGLIX_MAX_SUBSCRIPTIONS") { settings.broker.subscriptionsMax = $0 }
        try int(maxPatterns, "PIGLIX_MAX_PATTERNS") { settings.broker.patternsPerSubscriptionMax = $0 }
        try int(maxLocks, "PIGLIX_MAX_LOCKS") { settings.broker.locks.table.locksMax = $0 }
        try int(maxLockWaiters, "PIGLIX_MAX_LOCK_WAITERS") { settings.broker.locks.table.waitersMax = $0 }
        try int(maxLockStreams, "PIGLIX_MAX_LOCK_STREAMS") { settings.broker.locks.streamsPerNodeMax = $0 }
        try int(queueUnackedMax, "PIGLIX_QUEUE_UNACKED_MAX") { settings.broker.queues.unackedPerQueueMax = $0 }
        try int(queueInFlightMax, "PIGLIX_QUEUE_IN_FLIGHT_MAX") { settings.broker.queues.inFlightPerMemberMax = $0 }
        try int(heartbeatMs, "PIGLIX_HEARTBEAT_MS") { settings.heartbeatInterval = .milliseconds($0) }
        try int(batchBytes, "PIGLIX_BATCH_BYTES") { settings.batchBytesDefault = $0 }
        try int(lingerMs, "PIGLIX_LINGER_MS") { settings.lingerDefault = .milliseconds($0) }
        try int(maxBatchBytes, "PIGLIX_MAX_BATCH_BYTES") { settings.batchRequestBytesMax = $0 }
        try int(maxDecompressedBytes, "PIGLIX_MAX_DECOMPRESSED_BYTES") { settings.decompressedBytesMax = $0 }
        try int(maxErrorAcks, "PIGLIX_MAX_ERROR_ACKS") { settings.errorAcksMax = $0 }
        try int(compressionMemory, "PIGLIX_COMPRESSION_MEMORY") { settings.compressionMemoryBytes = $0 }
        try duration(requestHeadTimeout, "request-head-timeout", "PIGLIX_REQUEST_HEAD_TIMEOUT") { settings.requestHeadTimeout = $0 }
        try duration(idleTimeout, "idle-timeout", "PIGLIX_IDLE_TIMEOUT") { settings.idleTimeout = $0 }
        try int(maxConnectionsPerAddress, "PIGLIX_MAX_CONNECTIONS_PER_ADDRESS") { settings.connectionsPerAddressMax = $0 }
        try int(shutdownGraceMs, "PIGLIX_SHUTDOWN_GRACE_MS") { settings.shutdownGracePeriod = .milliseconds($0) }
        do { try settings.validate() } catch { throw ValidationError("\(error)") }
        return settings
    }

    func run() async throws {
        var configured = try settings()
        do {
            configured.authorizer = try await Authorizer.load(
                keyFile: string(jwtKeyFile, "PIGLIX_JWT_KEY_FILE"), jwksFile: string(jwksFile, "PIGLIX_JWKS_FILE"),
                limits: configured.broker.topicLimits)
        } catch { throw ValidationError(error.description) }
        let settings = configured
        let levelText = string(logLevel, "PIGLIX_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelText) else {
            throw ValidationError("log level \(levelText) is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "piglix")
        let server = try PiglixServer(settings: settings, registry: registry, logger: logger)
        let nodeID = settings.broker.nodeID
        if let authorizer = settings.authorizer {
            logger.info("bearer tokens required (\(authorizer.summary)); /healthz, /readyz, /openapi.yaml and the console page stay open")
        } else {
            logger.warning(
                "no --jwt-key-file or --jwks-file: anyone who reaches \(settings.host):\(settings.port) may publish and subscribe on every topic (docs/operations.md, \"Authorization\")")
        }
        try await server.run { port in
            let protocols = settings.tls == nil ? "HTTP/2 prior knowledge and HTTP/1.1" : "TLS with ALPN h2 and http/1.1"
            logger.info("piglix node \(nodeID) listening on \(settings.host):\(port) (\(protocols))")
        }
    }

    private func string(_ flag: String?, _ name: String) -> String? { flag ?? Environment.get(name) }

    /// `10`, `10s`, `1.5s`, `500ms`, `5m`: a plain number is seconds.
    static func parseDuration(_ text: String) -> Duration? {
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        for unit in units where number.hasSuffix(unit.suffix) {
            number = number.dropLast(unit.suffix.count)
            scale = unit.seconds
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    /// Reads and checks the cluster key file; every failure names the file.
    static func readClusterKey(_ path: String) throws -> ClusterKey {
        let contents: String
        do { contents = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ValidationError("--cluster-key-file \(path) cannot be read: \(error.localizedDescription)")
        }
        do { return try ClusterKey(fileContents: contents) } catch {
            throw ValidationError("--cluster-key-file \(path): \(error.description)")
        }
    }
}
