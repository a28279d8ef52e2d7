import NIOCore
import PiglixBroker
import PiglixTopics
import Synchronization

@testable import PiglixCluster
@testable import PiglixGroups

/// A group layer of one member, in process: every publish is delivered at
/// once to the local groups its topic matches and acked, a join is granted
/// with an empty checkpoint. It lets the broker's cluster mode be tested
/// without sockets (the TCP `ClusterNode` implements the same `GroupLayer`).
final class FakeGroupLayer: GroupLayer {
    struct State {
        var application: (any ClusterApplication)?
        var joined: [TopicPattern] = []
        var joins: [TopicPattern] = []
        var leaves: [TopicPattern] = []
        var delivered: UInt64 = 0
        var refuse: PublishRefusal?
        /// Joins are granted but no checkpoint ever comes (the group cannot
        /// become ready).
        var holdTransfers = false
    }
    let state = Mutex(State())
    let me = ProcessID(node: NodeID(1), incarnation: 1)
    var view: ViewID { ViewID(epoch: 1, coordinator: me) }

    func start(application: any ClusterApplication) async throws -> Int {
        state.withLock { $0.application = application }
        application.clusterStatusChanged(status)
        return 0
    }

    func shutdown() async {}

    /// The next publishes are refused with `why` (flow control, no primary).
    func refusePublishes(_ why: PublishRefusal?) { state.withLock { $0.refuse = why } }

    func publish(_ batch: [ClusterPublish], done: @escaping @Sendable ([ClusterPublishOutcome]) -> Void) {
        var deliveries: [ClusterDelivery] = []
        var outcomes: [ClusterPublishOutcome] = []
        let application = state.withLock { state -> (any ClusterApplication)? in
            for publish in batch {
                if let why = state.refuse {
                    outcomes.append(.refused(why))
                    continue
                }
                state.delivered += 1
                let seq = state.delivered
                let id = PiglixGroups.MessageID(view: view, origin: 0, seq: seq)
                let message = DataMessage(
                    id: id, publish: PublishID(origin: me, seq: seq), session: publish.session, level: publish.level,
                    kind: .publish(publish.destination), payload: publish.payload)
                var groups: [TopicPattern] = []
                if case .topic(let topic) = publish.destination { groups = state.joined.filter { $0.matches(topic) } }
                deliveries.append(
                    ClusterDelivery(
                        delivery: Delivery(message: message, view: view, groups: groups, afterCheckpoint: false),
                        viewEpoch: view.epoch, delivered: [seq], own: true))
                outcomes.append(.acked(viewEpoch: view.epoch, delivered: [seq], publish: PublishID(origin: me, seq: seq)))
            }
            return state.application
        }
        application?.clusterDeliver(deliveries)
        done(outcomes)
    }

    func join(_ pattern: TopicPattern) {
        let (application, hold) = state.withLock { state in
            state.joins.append(pattern)
            state.joined.append(pattern)
            return (state.application, state.holdTransfers)
        }
        application?.clusterGroupViewChanged(pattern: pattern, view: view.epoch, members: ["n1"], primary: true)
        if hold { return }
        _ = application?.clusterApplyCheckpoint(pattern: pattern, chunk: [], first: true, last: true)
    }

    func leave(_ pattern: TopicPattern) {
        state.withLock { state in
            state.leaves.append(pattern)
            state.joined.removeAll { $0 == pattern }
        }
    }

    var status: ClusterStatus {
        ClusterStatus(node: "n1", incarnation: 1, view: view.epoch, members: ["n1"], coordinator: "n1", primary: true, state: "member")
    }

    var counters: ClusterCounters { ClusterCounters() }

    func groupViews() async -> [(pattern: TopicPattern, view: UInt64, members: [String])] {
        state.withLock { $0.joined.map { ($0, view.epoch, ["n1"]) } }
    }
}
