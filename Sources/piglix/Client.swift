import ArgumentParser

// Placeholder commands; PiglixClient-based implementations replace these.
struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish messages.")
    func run() async throws { throw ValidationError("not built yet") }
}
struct Sub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Subscribe to patterns.")
    func run() async throws { throw ValidationError("not built yet") }
}
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark.")
    func run() async throws { throw ValidationError("not built yet") }
}
