import ArgumentParser

@main
struct Piglix: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "piglix",
        abstract: "Piglix: a topic-based publish/subscribe broker on virtual synchrony, over HTTP/2.",
        discussion: """
            Run a node with `piglix serve`, then publish with `piglix pub TOPIC DATA` or curl, and \
            subscribe with `piglix sub PATTERN` or curl. Every serve flag also reads a PIGLIX_* \
            environment variable, named in its help.

            Documentation: README.md and docs/ (protocol.md: the HTTP interface; operations.md: \
            flags, clusters, metrics; performance.md: benchmarks).
            """,
        subcommands: [Serve.self, Pub.self, Sub.self, Bench.self, Probe.self, Token.self],
        defaultSubcommand: nil
    )
}
