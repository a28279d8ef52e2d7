import NIOCore
import PiglixClient
import PiglixWire
import Synchronization

/// Consumes a subscription in a task and keeps what it got, for polling.
public final class Collector: Sendable {
    private final class Box: Sendable {
        let state = Mutex<(messages: [DeliveredMessage], controls: [ControlRecord], error: String?)>(([], [], nil))
    }
    private let box = Box()
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    public init(_ subscription: Subscription) {
        let box = self.box
        let started = Task {
            do {
                for try await record in subscription {
                    box.state.withLock { state in
                        switch record {
                        case .message(let message): state.messages.append(message)
                        case .control(let control): state.controls.append(control)
                        }
                    }
                }
            } catch {
                box.state.withLock { $0.error = "\(error)" }
            }
        }
        task.withLock { $0 = started }
    }

    public var messages: [DeliveredMessage] { box.state.withLock { $0.messages } }
    public var controls: [ControlRecord] { box.state.withLock { $0.controls } }
    public var error: String? { box.state.withLock { $0.error } }
    public var payloads: [String] { messages.map { String(buffer: $0.payload) } }
    public var views: Int { controls.filter { if case .view = $0 { return true } else { return false } }.count }

    public func cancel() {
        task.withLock { $0?.cancel() }
    }

    deinit { cancel() }
}
