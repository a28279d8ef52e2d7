import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import PiglixAuth
import PiglixBroker
import PiglixCluster
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The request context of every route: Hummingbird's core context plus the
/// channel, so a subscribe stream notices at once when its client goes away.
public struct PiglixRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    /// The bearer's grants, when the node checks tokens (AuthMiddleware).
    public var access: Access?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Builds and runs one Piglix node's HTTP front end over a broker.
public struct PiglixServer: Sendable {
    public let settings: ServerSettings
    public let broker: Broker
    public let registry: PrometheusCollectorRegistry
    /// Open connections per client address (`--max-connections-per-address`).
    public let connections: ConnectionLimiter
    /// Memory of compressed subscribe streams (`--compression-memory`).
    public let compression: CompressionBudget
    let logger: Logger
    let tlsHook = TLSReloadHook()

    public init(settings: ServerSettings, registry: PrometheusCollectorRegistry = .init(), logger: Logger) throws {
        try settings.validate()
        // Bad certificate or key files fail at start-up, naming the file.
        _ = try settings.tls?.configuration()
        self.settings = settings
        let cluster = try settings.cluster.map { try ClusterNode(settings: $0, logger: logger) }
        self.broker = try Broker(settings: settings.broker, cluster: cluster)
        self.registry = registry
        self.connections = ConnectionLimiter(perAddressMax: settings.connectionsPerAddressMax)
        self.compression = CompressionBudget(bytesMax: settings.compressionMemoryBytes)
        self.logger = logger
    }

    /// The router with every route of docs/protocol.md ("Calls", "Status endpoints"),
    /// each described in docs/openapi.yaml (OpenAPIDocumentTests checks).
    public func makeRouter() -> Router<PiglixRequestContext> {
        let router = Router(context: PiglixRequestContext.self)
        // Browsers on other origins (EventSource, fetch) may read streams and
        // publish; no credentials are involved, so any origin is allowed.
        // Outermost, so errors get their CORS headers too: inside it,
        // ProblemMiddleware has made them responses (a browser cannot read
        // an error without them).
        router.middlewares.add(
            CORSMiddleware(
                allowOrigin: .all,
                allowHeaders: [
                    .accept, .contentType, .contentEncoding, .lastEventID, .piglixDelivery, .piglixProducer, .piglixSequence, .cacheControl,
                    .authorization,
                ],
                allowMethods: [.get, .post, .delete, .options],
                exposedHeaders: ["Last-Event-ID", "Piglix-Message-Id"]))
        router.middlewares.add(ProblemMiddleware())
        router.middlewares.add(MetricsMiddleware())
        if let authorizer = settings.authorizer { router.middlewares.add(AuthMiddleware(authorizer: authorizer)) }
        let publish = PublishRoute(broker: broker, settings: settings)
        let subscribe = SubscribeRoute(broker: broker, settings: settings, compression: compression)
        let status = StatusRoutes(broker: broker, registry: registry, connections: connections, compression: compression)
        router.post("/v1/topics/:topic", use: publish.publishOne)
        router.post("/v1/publish", use: publish.publishMany)
        router.get("/v1/subscribe", use: subscribe.handle)
        let locks = LockRoutes(broker: broker, settings: settings)
        router.post("/v1/locks/:name", use: locks.request)
        router.delete("/v1/locks/:name", use: locks.release)
        router.get("/v1/locks", use: locks.list)
        router.post("/v1/ack", use: AckRoute(broker: broker).handle)
        router.get("/v1/cluster", use: status.cluster)
        router.get("/v1/groups", use: status.groups)
        router.get("/healthz", use: status.healthz)
        router.get("/readyz", use: status.readyz)
        router.get("/metrics", use: status.metrics)
        router.get("/openapi.yaml", use: OpenAPIDocument.response)  // docs/openapi.yaml
        ConsoleRoutes.add(to: router)  // the web console at /
        return router
    }

    /// The Hummingbird application on one plaintext port for h2c and HTTP/1.1.
    public func makeApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let settings = self.settings
        let connections = self.connections
        let tls = settings.tls
        let hook = tlsHook
        let fastPublish = FastPublish(broker: broker, settings: settings)
        return Application(
            router: makeRouter(),
            server: HTTPServerBuilder { responder in
                var context: TLSContextStore?
                if let tls {
                    context = try TLSContextStore(files: tls)
                    hook.register(context!)
                }
                return PiglixChannel(
                    responder: responder, requestHeadTimeout: TimeAmount(settings.requestHeadTimeout),
                    idleTimeout: TimeAmount(settings.idleTimeout), http2StreamsMax: settings.http2StreamsMax, limiter: connections,
                    tls: context, fastPublish: fastPublish)
            },
            configuration: ApplicationConfiguration(
                address: .hostname(settings.host, port: settings.port), serverName: "piglix", reuseAddress: true),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Reads `--tls-cert` and `--tls-key` again (what `SIGHUP` does): new
    /// connections get the new certificate; on an error the old one stays.
    public func reloadTLS() throws { try tlsHook.reload() }

    /// Runs the node until SIGTERM or SIGINT, then ends every subscriber
    /// stream with an `end` record before the listener stops.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await makeServiceGroup(gracefulShutdownSignals: [.sigterm, .sigint], onServerRunning: onServerRunning).run()
    }

    /// The node's services. Shut down in reverse order: the broker first ends
    /// the long-lived streams, then the server drains and closes.
    public func makeServiceGroup(
        gracefulShutdownSignals: [UnixSignal], onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> ServiceGroup {
        var services: [any Service] = [makeApplication(onServerRunning: onServerRunning), brokerService]
        if settings.tls != nil { services.append(TLSReloadService(server: self, logger: logger)) }
        var configuration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: gracefulShutdownSignals,
            logger: logger)
        // A client that stopped reading cannot hold the node up: after the
        // grace period its connection is cancelled.
        configuration.maximumGracefulShutdownDuration = settings.shutdownGracePeriod
        return ServiceGroup(configuration: configuration)
    }

    /// Heartbeats while running; on graceful shutdown ends all streams.
    public var brokerService: BrokerService { BrokerService(broker: broker, heartbeatInterval: settings.heartbeatInterval) }
}

/// The broker's part of the node's lifecycle.
public struct BrokerService: Service {
    let broker: Broker
    let heartbeatInterval: Duration

    public func run() async throws {
        // A cluster node joins (or forms) the cluster before it takes traffic
        // for real; /readyz says when it is in the primary component.
        try await broker.startCluster()
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: heartbeatInterval)
                broker.heartbeatTick()
            }
        }
        broker.shutdown()
        // Leave the cluster: peers see the silence and install a view without this node.
        await broker.leaveCluster()
    }
}

/// Reloads the certificate on `SIGHUP` (a renewed certificate, without a
/// restart).
struct TLSReloadService: Service {
    let server: PiglixServer
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    try server.reloadTLS()
                    logger.info("SIGHUP: reloaded the TLS certificate and key; new connections use them")
                } catch {
                    logger.error("SIGHUP: the TLS certificate or key could not be reloaded, the old ones stay: \(error)")
                }
            }
        }
    }
}
