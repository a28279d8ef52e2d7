// swift-tools-version:6.2
import Foundation
import PackageDescription

// Microbenchmarks of Piglix's in-process hot path (docs/performance.md,
// "Microbenchmarks"), with ordo-one/benchmark. A package of its own, so that
// building and testing the root package never builds the benchmark's
// dependencies. Run from the repository root:
//   swift package --package-path Benchmarks benchmark
//   scripts/bench-check.sh        # allocations against the stored baseline
// A path dependency's identity is its folder's name, which differs between
// checkouts (main, a worktree, CI's clone): read it off this file's place.
let piglix = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "PiglixBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "PiglixBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PiglixTopics", package: piglix),
                .product(name: "PiglixWire", package: piglix),
                .product(name: "PiglixBroker", package: piglix),
                .product(name: "PiglixCluster", package: piglix),
                .product(name: "PiglixGroups", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/PiglixBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
