import ArgumentParser
import PiglixGroups
import PiglixTopics
import PiglixSimulation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `piglix-sim`: runs the deterministic simulator over many seeds and checks
/// P1–P10; `bench` measures the core without I/O; `scale` prints the
/// view-change and per-multicast costs for growing clusters.
@main
struct PiglixSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "piglix-sim",
        abstract: "Deterministic fault-injecting simulator for the Piglix virtual synchrony core.",
        subcommands: [Check.self, Bench.self, Scale.self],
        defaultSubcommand: Check.self)

    /// Swift seeds its hashing at random in every process, and the core and
    /// the simulator iterate some sets and dictionaries, so a seed ran the
    /// same within one process but not from one run of the tool to the next.
    /// The tool re-executes itself once with deterministic hashing, so a
    /// printed seed replays exactly.
    static func main() {
        if getenv("SWIFT_DETERMINISTIC_HASHING") == nil {
            setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
            // Only reached when the re-execution failed: run as we are.
            print("piglix-sim: could not re-execute with SWIFT_DETERMINISTIC_HASHING=1; seeds may not replay across runs")
        }
        main(nil)
    }
}

struct NodeRange: ExpressibleByArgument {
    var defaultValueDescription: String { "\(range.lowerBound)...\(range.upperBound)" }
    var range: ClosedRange<Int>
    init?(argument: String) {
        let parts = argument.split(separator: ".", omittingEmptySubsequences: true)
        if parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 1, a <= b {
            range = a...b
        } else if let a = Int(argument), a >= 1 {
            range = a...a
        } else {
            return nil
        }
    }
}

extension FaultSet: ExpressibleByArgument {
    public init?(argument: String) { self.init(list: argument) }
    public var defaultValueDescription: String { list }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Run seeds and check P1–P10 and, with the retry fault, I1–I3, with the locks fault, L1–L4.")
    @Option(help: "Number of seeds to run.") var seeds: Int = 1000
    @Option(help: "First seed.") var firstSeed: UInt64 = 1
    @Option(help: "Cluster sizes, e.g. 3...7.") var nodes: NodeRange = NodeRange(argument: "3...7")!
    @Option(help: ArgumentHelp("Faults: all, classic (all but retry and locks), none, or a comma list of \(Fault.allCases.map(\.rawValue).joined(separator: ",")).")) var faults: FaultSet = .all
    @Flag(help: "Print the trace of the first failing seed (of the seed, passing or not, when --seeds is 1).") var trace = false
    @Flag(help: "Check internal invariants after every event (slow).") var invariants = false

    func run() throws {
        var failedBy: [Property: Int] = [:]
        var firstFailure: [Property: UInt64] = [:]
        var passed = 0
        var failed = 0
        var deliveries = 0
        var lockGrants = 0
        var lockHolds = 0
        var takenAgain = 0
        var delayed = 0
        var forgotten = 0
        var printedTrace = false
        let sizes = Array(nodes.range)
        for k in 0..<UInt64(seeds) {
            let seed = firstSeed + k
            let n = sizes[Int(seed % UInt64(sizes.count))]
            var sim = Simulator(config: SimulationConfig(seed: seed, nodes: n, faults: faults))
            sim.debugInvariants = invariants
            let result = sim.run()
            deliveries += result.deliveries
            for e in result.trace {
                switch e {
                case .lockGrant: lockGrants += 1
                case .lockHolder(_, _, _, _, true): lockHolds += 1
                case .fault(_, let text) where text.contains(" again: a flush cut"): takenAgain += 1
                case .fault(_, let text) where text.contains("the lock-delay"): delayed += 1
                case .fault(_, let text) where text.contains("a flush cut them and excluded their origin"): forgotten += 1
                default: break
                }
            }
            if result.violations.isEmpty {
                passed += 1
                if trace && seeds == 1 {
                    for e in result.trace { print("  \(e)") }
                }
            } else {
                failed += 1
                var printed = false
                for v in result.violations {
                    failedBy[v.property, default: 0] += 1
                    if firstFailure[v.property] == nil {
                        firstFailure[v.property] = seed
                        printed = true
                        print("seed \(seed) (\(n) nodes) violates \(v)")
                    }
                }
                // Every failing seed is named, the later ones in one line.
                if !printed { print("seed \(seed) (\(n) nodes) fails \(result.violations.map(\.property.rawValue).joined(separator: ", "))") }
                if trace && !printedTrace {
                    printedTrace = true
                    for e in result.trace { print("  \(e)") }
                }
            }
        }
        for p in Property.allCases {
            let f = failedBy[p] ?? 0
            let first = firstFailure[p].map { ", first seed \($0)" } ?? ""
            print("\(p.rawValue): \(seeds - f) passed, \(f) failed\(first)")
        }
        print("deliveries checked: \(deliveries)")
        if faults.contains(.locks) {
            print("lock grants checked: \(lockGrants) at replicas, \(lockHolds) held by clients, \(delayed) told after the lock-delay")
        }
        do {
            print("group states taken again after a flush cut their checkpoint: \(takenAgain); idempotence tables that forgot records: \(forgotten)")
        }
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Core throughput without I/O.")
    @Option(help: "Cluster size.") var nodes: Int = 3
    @Option(help: "Messages published, round robin over the nodes.") var messages: Int = 2_000_000
    @Option(help: "Payload bytes per message.") var payload: Int = 128
    @Option(help: "Delivery level: fifo, total or safe.") var level: String = "fifo"
    func run() throws {
        guard let l = DeliveryLevel(name: level) else { throw ValidationError("level is fifo, total or safe") }
        let r = CoreBenchmark.run(nodes: nodes, messages: messages, payloadBytes: payload, level: l)
        print(r)
    }
}

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "View-change time and messages per multicast by cluster size.")
    @Option(parsing: .upToNextOption, help: "Cluster sizes to measure.") var sizes: [Int] = [3, 10, 50, 100]
    func run() throws {
        print(ScaleReport.header)
        for n in sizes { print(ScaleReport.measure(nodes: n).row) }
    }
}
