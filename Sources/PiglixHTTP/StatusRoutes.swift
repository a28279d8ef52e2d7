import HTTPTypes
import Hummingbird
import NIOCore
import PiglixBroker
import PiglixWire
import Prometheus

/// `/v1/cluster`, `/v1/groups`, `/healthz`, `/readyz`, `/metrics`.
struct StatusRoutes: Sendable {
    let broker: Broker
    let registry: PrometheusCollectorRegistry
    let connections: ConnectionLimiter
    let compression: CompressionBudget

    /// A single node is its own one-member primary view.
    var isPrimary: Bool { broker.clusterStatus?.primary ?? true }

    func cluster(_ request: Request, context: some RequestContext) -> Response {
        var body = ByteBuffer()
        let status = broker.clusterStatus
        let node = broker.settings.nodeID
        body.writeStaticString("{\"node\":")
        body.writeJSONString(node)
        body.writeStaticString(",\"incarnation\":")
        body.writeDecimal(status?.incarnation ?? UInt64(broker.epoch))
        body.writeStaticString(",\"view\":")
        body.writeDecimal(status?.view ?? broker.viewID)
        body.writeStaticString(",\"members\":[")
        for (index, member) in (status?.members ?? [node]).enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeJSONString(member)
        }
        body.writeStaticString("],\"coordinator\":")
        if let coordinator = status.map({ $0.coordinator }) ?? node {
            body.writeJSONString(coordinator)
        } else {
            body.writeStaticString("null")
        }
        body.writeStaticString(",\"primary\":")
        body.writeString(isPrimary ? "true" : "false")
        body.writeStaticString(",\"clustered\":")
        body.writeString(status == nil ? "false" : "true")
        if let status {
            body.writeStaticString(",\"state\":")
            body.writeJSONString(status.state)
        }
        body.writeStaticString("}\n")
        return json(body)
    }

    func groups(_ request: Request, context: some RequestContext) async -> Response {
        var body = ByteBuffer()
        body.writeStaticString("{\"groups\":[")
        for (index, group) in await broker.allGroups().enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeStaticString("{\"group\":")
            body.writeJSONString(group.pattern)
            body.writeStaticString(",\"view\":")
            body.writeDecimal(group.view)
            body.writeStaticString(",\"members\":[")
            for (memberIndex, member) in group.members.enumerated() {
                if memberIndex > 0 { body.writeInteger(UInt8(ascii: ",")) }
                body.writeJSONString(member)
            }
            body.writeStaticString("],\"local_subscribers\":")
            body.writeDecimal(UInt64(group.localSubscribers))
            body.writeStaticString(",\"delivered\":")
            body.writeDecimal(group.delivered)
            body.writeInteger(UInt8(ascii: "}"))
        }
        body.writeStaticString("]}\n")
        return json(body)
    }

    func healthz(_ request: Request, context: some RequestContext) -> Response {
        json(ByteBuffer(string: "{\"status\":\"ok\"}\n"))
    }

    func readyz(_ request: Request, context: some RequestContext) -> Response {
        if broker.isShuttingDown {
            return Problem(.serviceUnavailable, "shutting down", headers: [.retryAfter: "1"]).response()
        }
        guard broker.isReady else {
            return Problem(.serviceUnavailable, "not in the primary component", headers: [.retryAfter: "1"]).response()
        }
        return json(ByteBuffer(string: "{\"status\":\"ready\",\"primary\":true}\n"))
    }

    func metrics(_ request: Request, context: some RequestContext) -> Response {
        var text = registry.emitToString()
        let stats = broker.stats
        func line(_ name: String, _ type: String, _ help: String, _ value: some BinaryInteger) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        line("piglix_messages_published_total", "counter", "Messages accepted for publishing on this node.", stats.published)
        line("piglix_messages_delivered_total", "counter", "Messages taken from subscriber queues to be written.", stats.delivered)
        let idempotence = broker.idempotenceStats
        line(
            "piglix_idempotent_duplicates_total", "counter",
            "Idempotent retries answered with the original's id instead of being delivered again (suppressed at delivery or at entry).",
            idempotence.duplicatesSuppressed)
        line(
            "piglix_idempotent_too_old_total", "counter", "Idempotent records refused as older than their producer's window (409).",
            idempotence.tooOldRefused)
        line("piglix_idempotent_producers", "gauge", "Producers in this node's idempotence table.", idempotence.producers)
        line(
            "piglix_idempotent_producers_evicted_total", "counter", "Producers forgotten to make room (least recently used).",
            idempotence.producersEvicted)
        let locks = broker.lockStats
        line("piglix_locks", "gauge", "Locks held or waited for in this node's replica of the lock table.", locks.locks)
        line("piglix_lock_waiters", "gauge", "Requests waiting for a lock, cluster-wide (this node's replica).", locks.waiters)
        line("piglix_lock_streams", "gauge", "Open lock streams on this node (holding or waiting).", locks.streams)
        line("piglix_lock_grants_total", "counter", "Locks granted to this node's streams.", locks.granted)
        line("piglix_lock_lost_total", "counter", "Lock streams of this node that ended without a release (lease, primary lost, owner left).", locks.lost)
        let queues = broker.queueStats
        line("piglix_queues", "gauge", "Work queues in this node's queue table (the cluster's, replicated).", queues.queues)
        line("piglix_queue_members", "gauge", "Members of all work queues, cluster-wide.", queues.members)
        line("piglix_queue_unacked", "gauge", "Work queue messages not yet acked (assigned or waiting), cluster-wide.", queues.unacked)
        line("piglix_queue_backlog", "gauge", "Work queue messages waiting for a member with room, cluster-wide.", queues.backlog)
        line("piglix_queue_acked_total", "counter", "Work queue messages acked (as this node delivered the acks).", queues.acked)
        line(
            "piglix_queue_redelivered_total", "counter", "Work queue messages assigned again after their holder left or failed.",
            queues.redelivered)
        line(
            "piglix_queue_overflow_total", "counter", "Messages a work queue did not take: it held its limit of unacked messages.",
            queues.overflowed)
        line("piglix_messages_dropped_total", "counter", "Messages dropped from full subscriber queues.", stats.dropped)
        line("piglix_subscriptions", "gauge", "Open subscriptions.", stats.subscriptions)
        line("piglix_retained_messages", "gauge", "Messages held in retained history.", stats.retainedMessages)
        line("piglix_retained_bytes", "gauge", "Bytes held in retained history.", stats.retainedBytes)
        line("piglix_retained_topics", "gauge", "Topics with retained history.", stats.retainedTopics)
        line("piglix_view_id", "gauge", "Current cluster view id.", broker.clusterStatus?.view ?? broker.viewID)
        line("piglix_primary", "gauge", "1 when this node is in the primary component.", isPrimary ? 1 : 0)
        line("piglix_http_connections", "gauge", "Open client connections (HTTP/1.1 and HTTP/2).", connections.openConnections)
        line(
            "piglix_http_refused_connections_total", "counter",
            "Client connections closed at accept: their address had --max-connections-per-address open.", connections.refusedConnections)
        line("piglix_compression_bytes", "gauge", "Memory reserved by compressed subscribe streams (of --compression-memory).", compression.usedBytes)
        line(
            "piglix_compression_refused_total", "counter", "Compressed subscribes refused (429) because --compression-memory was in use.",
            compression.refusedStreams)
        if let c = broker.clusterCounters {
            line("piglix_cluster_view_changes_total", "counter", "Cluster views installed by this node.", c.viewChanges)
            line("piglix_cluster_suspicions_total", "counter", "Members removed from the view after being suspected.", c.suspicions)
            line("piglix_cluster_flushes_total", "counter", "View-change flushes this node took part in.", c.flushes)
            text += "# HELP piglix_cluster_flush_seconds_total Time spent flushing.\n# TYPE piglix_cluster_flush_seconds_total counter\npiglix_cluster_flush_seconds_total \(c.flushSecondsTotal)\n"
            text += "# HELP piglix_cluster_last_flush_seconds Duration of the last flush.\n# TYPE piglix_cluster_last_flush_seconds gauge\npiglix_cluster_last_flush_seconds \(c.lastFlushSeconds)\n"
            line("piglix_cluster_retransmission_requests_total", "counter", "Retransmission requests (NAKs) received from peers.", c.retransmissions)
            line("piglix_cluster_unstable_messages", "gauge", "Messages of the current view buffered until stable.", c.bufferedMessages)
            line("piglix_cluster_pending_publishes", "gauge", "Publishes waiting for flow control or a flush.", c.pendingPublishes)
            line("piglix_cluster_frames_sent_total", "counter", "Frames sent to peers.", c.framesSent)
            line("piglix_cluster_frames_received_total", "counter", "Frames received from peers.", c.framesReceived)
            line("piglix_cluster_bytes_sent_total", "counter", "Bytes sent to peers.", c.bytesSent)
            line("piglix_cluster_bytes_received_total", "counter", "Bytes received from peers.", c.bytesReceived)
            line("piglix_cluster_decode_errors_total", "counter", "Peer frames that could not be decoded.", c.decodeErrors)
            text += "# HELP piglix_cluster_rejected_messages_total Decoded protocol messages dropped before the core acted on them.\n"
            text += "# TYPE piglix_cluster_rejected_messages_total counter\n"
            for (reason, count) in c.rejectedMessages.sorted(by: { $0.key < $1.key }) {
                text += "piglix_cluster_rejected_messages_total{reason=\"\(reason)\"} \(count)\n"
            }
            line(
                "piglix_cluster_refused_peers_total", "counter",
                "Peer connections refused in the handshake (no cluster key, another key, a bad proof or frame).", c.refusedPeers)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private func json(_ body: ByteBuffer) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json", .contentLength: String(body.readableBytes)],
            body: .init(byteBuffer: body))
    }
}
