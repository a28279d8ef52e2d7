import ArgumentParser

/// `piglix bench --nodes 3`: the options of the cluster mode (the rest —
/// seconds, warm-up, rate, size, in-flight — are the single-node bench's).
struct ClusterBenchOptions: ParsableArguments {
    @Option(
        help: """
            Start a local cluster of this many nodes (3) on loopback and run the cluster scenarios: \
            fifo (publish on n1, subscribe on n2), fanout (publish on n1, one subscriber on every node), \
            total and safe (publish on n1, subscribe on n2), safe-paced (safe at --safe-rate), \
            view-change (SIGKILL n3, time until the survivors show the new view). \
            The scenario argument picks one; the default runs them all.
            """)
    var nodes: Int?
    @Option(help: "Cluster mode: --suspicion-timeout-ms of the nodes.")
    var suspicionTimeoutMs: Int = 500
    @Option(help: "Cluster mode: publish rate of the safe-paced scenario, msgs/s.")
    var safeRate: Int = 5000
    @Option(help: "Cluster mode: view changes to measure (SIGKILL n3, restart it, repeat).")
    var viewChanges: Int = 3
    @Option(help: "Cluster mode: publish streams on n1 (one connection each) sharing the rate; each is its own publisher session.")
    var publishers: Int = 1
}

/// The cluster scenarios, in the order `all` runs them.
enum ClusterScenario: String, CaseIterable {
    case fifo, fanout, total, safe
    case safePaced = "safe-paced"
    case viewChange = "view-change"
}

/// What one cluster run needs from the command line.
struct ClusterBenchPlan {
    var nodes: Int
    var scenarios: [ClusterScenario]
    var seconds: Double
    /// Measured messages to publish instead of `seconds` (split between the
    /// publishers): a fixed-count run.
    var messages: Int?
    var warmup: Double
    var rate: Int?
    var size: Int
    var inFlight: Int
    var suspicionTimeoutMs: Int
    var safeRate: Int
    var viewChanges: Int
    var publishers: Int

    /// Validates the options; `scenario` is the bench's positional argument
    /// (`1to1`, its default, and `all` mean every cluster scenario).
    init(options: ClusterBenchOptions, scenario: String, seconds: Double, messages: Int? = nil, warmup: Double, rate: Int?, size: Int, inFlight: Int) throws {
        guard let nodes = options.nodes else { throw ValidationError("--nodes is missing") }
        guard nodes == 3 else { throw ValidationError("--nodes \(nodes): the cluster bench runs 3 nodes") }
        if scenario == "1to1" || scenario == "all" {
            scenarios = ClusterScenario.allCases
        } else if let one = ClusterScenario(rawValue: scenario) {
            scenarios = [one]
        } else {
            throw ValidationError(
                "unknown cluster scenario \(scenario); known: all, \(ClusterScenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard size >= 16 else { throw ValidationError("--size must be at least 16") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard options.safeRate > 0 else { throw ValidationError("--safe-rate must be positive") }
        guard options.suspicionTimeoutMs >= 300 else {
            throw ValidationError("--suspicion-timeout-ms must be at least 300 (3 heartbeats of 100 ms)")
        }
        guard options.viewChanges >= 1 else { throw ValidationError("--view-changes must be at least 1") }
        guard (1...64).contains(options.publishers) else { throw ValidationError("--publishers must be 1 to 64") }
        self.nodes = nodes
        self.seconds = seconds
        self.messages = messages
        self.warmup = warmup
        self.rate = rate
        self.size = size
        self.inFlight = inFlight
        self.suspicionTimeoutMs = options.suspicionTimeoutMs
        self.safeRate = options.safeRate
        self.viewChanges = options.viewChanges
        self.publishers = options.publishers
    }
}
