// swift-tools-version:6.2
// Piglix from Swift: a publisher and a subscriber using the PiglixClient
// library of this repository (a dependency by path, as an application would
// depend on it by URL and version).
//
//   swift run subscriber 'sensors.>'
//   swift run publisher sensors.paris.temp 21.5 21.7
import PackageDescription

// SwiftPM names a dependency by path after its directory: this repository's
// checkout (`piglix`, or whatever it was cloned as). An application depending
// on Piglix by URL writes `package: "piglix"`.
let piglix = Context.packageDirectory.split(separator: "/").dropLast(2).last.map { $0.lowercased() } ?? "piglix"

let package = Package(
    name: "piglix-swift-examples",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "publisher",
            dependencies: [
                .product(name: "PiglixClient", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "subscriber",
            dependencies: [
                .product(name: "PiglixClient", package: piglix),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
