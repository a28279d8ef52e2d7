// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "piglix",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "piglix", targets: ["piglix"]),
        .executable(name: "piglix-sim", targets: ["piglix-sim"]),
        .library(name: "PiglixClient", targets: ["PiglixClient"]),
        .library(name: "PiglixTopics", targets: ["PiglixTopics"]),
        .library(name: "PiglixGroups", targets: ["PiglixGroups"]),
        // For the fuzz package (Fuzz/Package.swift), which depends on this one by path.
        .library(name: "PiglixWire", targets: ["PiglixWire"]),
        .library(name: "PiglixCluster", targets: ["PiglixCluster"]),
        // For the microbenchmarks (Benchmarks/Package.swift), which depend on this one by path.
        .library(name: "PiglixBroker", targets: ["PiglixBroker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
    ],
    targets: [
        // Topics and patterns: parsing, validation, the matching trie. No dependencies.
        .target(name: "PiglixTopics", swiftSettings: strict),
        // The virtual synchrony core: sans-IO, no NIO, no clocks.
        .target(name: "PiglixGroups", dependencies: ["PiglixTopics"], swiftSettings: strict),
        // Deterministic simulator and property checker for the core.
        .target(name: "PiglixSimulation", dependencies: ["PiglixGroups", "PiglixTopics"], swiftSettings: strict),
        .executableTarget(
            name: "piglix-sim",
            dependencies: [
                "PiglixSimulation", "PiglixGroups", "PiglixTopics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Wire formats shared by server and client: binary frames, NDJSON/SSE records.
        .target(
            name: "PiglixWire",
            dependencies: [
                "PiglixTopics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),
        // TCP between nodes: framing, handshake, redial, coalesced writes.
        .target(
            name: "PiglixCluster",
            dependencies: [
                "PiglixGroups", "PiglixTopics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Subscriptions, per-subscriber queues, retention.
        .target(
            name: "PiglixBroker",
            dependencies: [
                "PiglixTopics", "PiglixWire", "PiglixCluster", "PiglixGroups",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // Who may publish and subscribe where: JWT bearer tokens and their grants.
        .target(
            name: "PiglixAuth",
            dependencies: [
                "PiglixTopics",
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict
        ),
        // HTTP/2 + HTTP/1.1 front end.
        .target(
            name: "PiglixHTTP",
            dependencies: [
                "PiglixBroker", "PiglixCluster", "PiglixTopics", "PiglixWire", "PiglixAuth",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Swift client over HTTP/2 with prior knowledge.
        .target(
            name: "PiglixClient",
            dependencies: [
                "PiglixWire", "PiglixTopics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "piglix",
            dependencies: [
                "PiglixHTTP", "PiglixBroker", "PiglixCluster", "PiglixClient", "PiglixWire", "PiglixTopics", "PiglixAuth",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // What the integration and HTTP tests share: `piglix serve` children,
        // curl, free ports, polling, running scripts (like SWIMTestKit).
        // A plain target, not a product; no Hummingbird.
        .target(
            name: "PiglixTestKit",
            dependencies: [
                "PiglixClient", "PiglixWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/PiglixTestKit",
            swiftSettings: strict
        ),
        .testTarget(name: "PiglixTopicsTests", dependencies: ["PiglixTopics"], swiftSettings: strict),
        .testTarget(name: "PiglixGroupsTests", dependencies: ["PiglixGroups", "PiglixTopics"], swiftSettings: strict),
        .testTarget(name: "PiglixSimulationTests", dependencies: ["PiglixSimulation", "PiglixGroups", "PiglixTopics"], swiftSettings: strict),
        .testTarget(name: "PiglixWireTests", dependencies: ["PiglixWire", "PiglixTopics"], swiftSettings: strict),
        .testTarget(
            name: "PiglixAuthTests",
            dependencies: ["PiglixAuth", "PiglixTopics", .product(name: "JWTKit", package: "jwt-kit")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PiglixClusterTests",
            dependencies: [
                "PiglixCluster", "PiglixGroups", "PiglixTopics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PiglixBrokerTests",
            dependencies: [
                "PiglixBroker", "PiglixTopics", "PiglixWire", "PiglixCluster", "PiglixGroups",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PiglixHTTPTests",
            dependencies: [
                "PiglixHTTP", "PiglixBroker", "PiglixClient", "PiglixWire", "PiglixTopics", "PiglixTestKit",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PiglixIntegrationTests",
            dependencies: [
                "PiglixClient", "PiglixWire", "PiglixTestKit",
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),
    ]
)
