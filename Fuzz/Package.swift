// swift-tools-version:6.2
// libFuzzer targets for Piglix (docs/fuzzing.md). A package of its own so
// that `swift build` and `swift test` of the main package are unchanged:
// build it with scripts/fuzz.sh, which passes
// `-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library`.
//
// Each target's main.swift has an `@main` type that hands its
// `LLVMFuzzerTestOneInput` to libFuzzer's `LLVMFuzzerRunDriver`: SwiftPM
// renames an executable's entry point (`<Target>_main`, linked as `main`),
// so libFuzzer's own `main` cannot be the one linked in.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which differs between
// checkouts (main, a worktree, CI's clone): read it off this file's place.
let piglix = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + dependencies, swiftSettings: strict)
}

let package = Package(
    name: "piglix-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
    ],
    targets: [
        // Input slicing, seed-corpus writing and the failure report shared by the targets.
        .target(
            name: "FuzzSupport", dependencies: ["CLibFuzzer", .product(name: "NIOCore", package: "swift-nio")], swiftSettings: strict),
        // Declares libFuzzer's LLVMFuzzerRunDriver for FuzzSupport.
        .target(name: "CLibFuzzer"),
        fuzzTarget(
            "FuzzPeerFrames",
            [
                .product(name: "PiglixCluster", package: piglix), .product(name: "PiglixGroups", package: piglix),
                .product(name: "PiglixTopics", package: piglix), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]),
        fuzzTarget("FuzzTopics", [.product(name: "PiglixTopics", package: piglix)]),
        fuzzTarget(
            "FuzzNDJSON",
            [
                .product(name: "PiglixWire", package: piglix), .product(name: "PiglixTopics", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        fuzzTarget(
            "FuzzBinaryFrames",
            [
                .product(name: "PiglixWire", package: piglix), .product(name: "PiglixTopics", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        fuzzTarget(
            "FuzzCompressedBody",
            [
                .product(name: "PiglixWire", package: piglix), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]),
        fuzzTarget(
            "FuzzTables",
            [
                .product(name: "PiglixBroker", package: piglix), .product(name: "PiglixGroups", package: piglix),
                .product(name: "PiglixTopics", package: piglix), .product(name: "PiglixWire", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        fuzzTarget(
            "FuzzCore",
            [
                .product(name: "PiglixCluster", package: piglix), .product(name: "PiglixGroups", package: piglix),
                .product(name: "PiglixTopics", package: piglix), .product(name: "NIOCore", package: "swift-nio"),
            ]),
    ]
)
