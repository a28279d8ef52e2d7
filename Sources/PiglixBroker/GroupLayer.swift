import PiglixCluster
import PiglixTopics

/// What the broker needs from the group layer under it in a cluster: the
/// whole of its dependence on the cluster, so the broker's cluster mode runs
/// in process over a fake (the tests' `FakeGroupLayer`) as well as over the
/// TCP `ClusterNode`.
///
/// Calls into the layer never block; results come back through the
/// `ClusterApplication` the broker is (deliveries, views, checkpoints) and
/// through the `publish` completion. A single node has no group layer: the
/// broker delivers its own publishes at once.
public protocol GroupLayer: AnyObject, Sendable {
    /// Joins (or forms) the cluster, with `application` as the receiver of
    /// deliveries and views from here on.
    func start(application: any ClusterApplication) async throws -> Int
    /// Leaves the cluster; publishes in flight fail.
    func shutdown() async
    /// Publishes a batch; `done` gets one outcome per publish, in order, once
    /// each reached its level here, was refused or failed.
    func publish(_ batch: [ClusterPublish], done: @escaping @Sendable ([ClusterPublishOutcome]) -> Void)
    /// A pattern got its first local subscriber: join its group.
    func join(_ pattern: TopicPattern)
    /// A pattern lost its last local subscriber: leave its group.
    func leave(_ pattern: TopicPattern)
    /// The cluster view as this node sees it now.
    var status: ClusterStatus { get }
    /// The layer's counters, for `/metrics`.
    var counters: ClusterCounters { get }
    /// Every group of the cluster (pattern, view, member names).
    func groupViews() async -> [(pattern: TopicPattern, view: UInt64, members: [String])]
    /// How long ago this node last heard from a majority of its view (the
    /// lock lease); nil outside a view.
    func majorityHeardAgo() async -> Duration?
    /// The failure detector's suspicion timeout.
    var suspicionTimeout: Duration { get }
}

extension GroupLayer {
    /// A layer that cannot tell (the tests' fake): always heard.
    public func majorityHeardAgo() async -> Duration? { .zero }
    public var suspicionTimeout: Duration { .seconds(1) }
}

extension ClusterNode: GroupLayer {}
