#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLibFuzzer
import NIOCore

/// The fuzz input, consumed from the front: control bytes first, then data.
/// Running out is never an error: a missing control byte reads as 0.
public struct FuzzInput {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))[...]
    }

    public init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    public var isEmpty: Bool { bytes.isEmpty }

    public mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }

    public mutating func take(_ count: Int) -> ArraySlice<UInt8> {
        let n = min(count, bytes.count)
        defer { bytes = bytes.dropFirst(n) }
        return bytes.prefix(n)
    }

    public mutating func rest() -> ArraySlice<UInt8> {
        defer { bytes = [] }
        return bytes
    }
}

/// Cuts `bytes` into chunks whose sizes come from `seed` (a cheap
/// generator, so one input always cuts the same way): how a body arrives
/// from the network, in pieces of any size.
public func chunks(_ bytes: ArraySlice<UInt8>, seed: UInt8) -> [ByteBuffer] {
    if seed == 0 { return [ByteBuffer(bytes: bytes)] }
    var state = UInt32(seed) &* 2_654_435_761 | 1
    var out: [ByteBuffer] = []
    var rest = bytes
    while !rest.isEmpty {
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        // Mostly small pieces, sometimes larger ones.
        let size = state % 4 == 0 ? Int((state >> 8) % 257) + 1 : Int((state >> 8) % 9) + 1
        out.append(ByteBuffer(bytes: rest.prefix(size)))
        rest = rest.dropFirst(size)
    }
    return out
}

/// A property the target checks did not hold: report it and abort, so
/// libFuzzer saves the input as a crash.
public func fuzzFailure(_ message: String, file: StaticString = #file, line: UInt = #line) -> Never {
    let text = "FUZZ PROPERTY FAILED at \(file):\(line): \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    abort()
}

public func check(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fuzzFailure(message(), file: file, line: line) }
}

/// With `PIGLIX_FUZZ_MAKE_CORPUS=DIR` in the environment a target writes its
/// seed inputs to DIR (one file each, `seed-NNN`) and exits instead of fuzzing.
public func makeCorpusIfAsked(_ seeds: () -> [[UInt8]]) {
    guard let raw = getenv("PIGLIX_FUZZ_MAKE_CORPUS") else { return }
    let dir = String(cString: raw)
    mkdir(dir, 0o755)
    let all = seeds()
    for (index, seed) in all.enumerated() {
        let path = dir + "/seed-" + String(index + 1000).dropFirst()
        guard let file = fopen(path, "wb") else { fuzzFailure("cannot write \(path)") }
        _ = seed.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    print("wrote \(all.count) seed inputs to \(dir)")
    exit(0)
}

extension ByteBuffer {
    public var bytes: [UInt8] { Array(readableBytesView) }
}

nonisolated(unsafe) private var target: ((UnsafePointer<UInt8>, Int) -> CInt)?

/// The body of each target's `main`: writes the seed corpus when asked
/// (`PIGLIX_FUZZ_MAKE_CORPUS`), else runs libFuzzer on `test` with the
/// command line's libFuzzer flags and exits with its status.
public func runLibFuzzer(_ test: @escaping (UnsafePointer<UInt8>, Int) -> CInt, seeds: () -> [[UInt8]]) -> Never {
    makeCorpusIfAsked(seeds)
    target = test
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        guard let data else {
            var none: UInt8 = 0
            return target!(&none, 0)
        }
        return target!(data, size)
    }
    exit(status)
}
