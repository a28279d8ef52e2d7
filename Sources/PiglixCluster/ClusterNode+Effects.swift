import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PiglixGroups
import PiglixTopics

#if canImport(Glibc)
import Glibc
#endif


/// Carrying out the core's effects (etcd raft's `Ready` loop), on the loop.
extension ClusterNode {
    // MARK: Effects

    /// Carries out the core's effects in order.
    func execute(_ initial: [GroupEffect]) {
        var queue = initial
        var index = 0
        let app = box.value.application
        var statusDirty = false
        var deliveries: [ClusterDelivery] = []
        while index < queue.count {
            let effect = queue[index]
            index += 1
            switch effect {
            case .send, .deliver, .setTimer: break
            default:
                // Every other effect sees the deliveries before it applied.
                if !deliveries.isEmpty {
                    app?.clusterDeliver(deliveries)
                    deliveries.removeAll(keepingCapacity: true)
                }
            }
            switch effect {
            case .send(let to, let message):
                enqueue(message, to: to)
            case .deliver(let d):
                trackPosition(d.message.id)
                deliveries.append(
                    ClusterDelivery(
                        delivery: d, viewEpoch: d.message.id.view.epoch, delivered: box.value.delivered,
                        own: d.message.publish.origin == peekCore { $0.me }))
            case .installClusterView(let view):
                box.value.counters.viewChanges += 1
                statusDirty = true
                app?.clusterViewInstalled(epoch: view.id.epoch, members: view.members, me: peekCore { $0.me })
            case .installGroupView(let gv):
                app?.clusterGroupViewChanged(
                    pattern: gv.pattern, view: gv.id, members: gv.members.map { name($0.node) },
                    primary: peekCore { $0.isInPrimary })
                app?.clusterGroupViewInstalled(
                    pattern: gv.pattern, view: gv.id, clusterEpoch: gv.clusterView.epoch,
                    processes: gv.members.map { lockOwner($0) })
            case .primaryLost:
                statusDirty = true
            case .rejoining:
                statusDirty = true
                box.value.checkpoints.removeAll()
                app?.clusterRejoining()
            case .requestCheckpoint(let request):
                guard let app else { break }
                box.value.checkpoints[request.ticket] = app.clusterCheckpoint(pattern: request.pattern)
                queue.append(contentsOf: nextCheckpointChunk(request.ticket))
            case .requestCheckpointChunk(let ticket):
                queue.append(contentsOf: nextCheckpointChunk(ticket))
            case .releaseCheckpoint(let ticket):
                box.value.checkpoints[ticket] = nil
            case .forgetDeliveries(let pattern, let ids):
                logger.warning("the state of \(pattern.name) holds \(ids.count) messages of a member a flush excluded that the flush cut: forgetting them")
                app?.clusterForgetDeliveries(pattern: pattern, ids: ids)
            case .transferRestarted(let pattern):
                logger.warning("the state of \(pattern.name) came from a member a flush then excluded, with a message the flush cut: taking it again")
                app?.clusterTransferRestarted(pattern: pattern)
            case .applyCheckpointChunk(let chunk):
                if chunk.isFirst { app?.clusterCheckpointSkips(pattern: chunk.pattern, skip: chunk.skip) }
                let ok = app?.clusterApplyCheckpoint(pattern: chunk.pattern, chunk: chunk.state, first: chunk.isFirst, last: chunk.last) ?? true
                if !ok {
                    logger.warning("checkpoint chunk \(chunk.index) of \(chunk.pattern.name) is unreadable; the transfer restarts")
                }
                queue.append(contentsOf: box.value.core.onCheckpointChunkApplied(chunk, ok: ok, now: now))
            case .publishAcked(let token, let id, _):
                complete(token, .acked(viewEpoch: box.value.positionView?.epoch ?? 0, delivered: box.value.delivered, publish: id))
            case .publishRefused(let token, let why):
                complete(token, .refused(why))
            case .publishFailed(let token, _, let why):
                complete(token, .failed(why))
            case .setTimer(let at):
                schedule(at)
            case .persistAcceptor(let state):
                // Before any message of this turn leaves: the sends are
                // only queued until `flushOutgoing` below.
                guard let file = acceptorFile else { break }
                do { try file.write(state) } catch {
                    // A vote that may leave without its record must not be
                    // remembered wrong: forget it all instead.
                    file.remove()
                    logger.error("cannot write \(file.path): \(error); removed it, so a restart of this node will not count for its old seat")
                }
            case .rejectedMessage(let from, let reason):
                box.value.counters.rejectedMessages[reason.rawValue, default: 0] += 1
                logger.warning("rejected a protocol message from \(name(from.node)): \(reason.rawValue)")
                // A malformed message says the peer is broken or lying, not
                // late: drop the link (its state restarts with a new
                // handshake). An unreachable cut is this node's own finding.
                if reason != .unreachableCut, let peer = box.value.names[from.node] { transport.disconnect(peer) }
            }
        }
        if !deliveries.isEmpty { app?.clusterDeliver(deliveries) }
        flushOutgoing()
        observeFlush()
        // The core regains the primary silently (a suspect is heard again):
        // compare rather than wait for an effect.
        // (Read through the box: a copy of the core would retain every field.
        // The view itself only changes with an effect.)
        if statusDirty || box.value.lastStatus == nil || box.value.lastStatus?.primary != peekCore({ $0.isInPrimary }) {
            publishStatus(app)
        }
        let (buffered, pending) = peekCore { ($0.bufferedMessageCount, $0.pendingPublishCount) }
        let counters = box.value.counters
        counterBox.withLockedValue {
            $0 = counters
            $0.bufferedMessages = buffered
            $0.pendingPublishes = pending
        }
    }

    /// A process as the lock table names it: `nodeIDhex/incarnation`, the
    /// same on every node whether or not it knows the node's name yet.
    func lockOwner(_ p: ProcessID) -> String { processName(node: p.node, incarnation: p.incarnation) }

    /// Encodes a ticket's next checkpoint chunk (one chunk per call, so a
    /// large checkpoint never holds the loop) and hands it to the core.
    func nextCheckpointChunk(_ ticket: UInt64) -> [GroupEffect] {
        guard var reader = box.value.checkpoints.removeValue(forKey: ticket) else { return [] }
        let (chunk, last) = reader.nextChunk(bytes: settings.checkpointChunkBytes)
        if !last { box.value.checkpoints[ticket] = reader }
        return box.value.core.onCheckpointChunk(ticket: ticket, state: chunk, last: last, now: now)
    }

    /// Reads the core in place. A computed property of the core (another
    /// module) read straight through `box.value.core` copied the whole core
    /// first (a retain and a release per field), several times per batch.
    @inline(__always)
    func peekCore<R>(_ read: (inout GroupNode) -> R) -> R { read(&box.value.core) }

    func trackPosition(_ id: MessageID) {
        if box.value.positionView != id.view {
            box.value.positionView = id.view
            box.value.delivered.removeAll(keepingCapacity: true)
        }
        let r = Int(id.origin)
        if box.value.delivered.count <= r { box.value.delivered.append(contentsOf: repeatElement(0, count: r + 1 - box.value.delivered.count)) }
        if box.value.delivered[r] < id.seq { box.value.delivered[r] = id.seq }
    }

    func complete(_ token: UInt64, _ outcome: ClusterPublishOutcome) {
        guard let (completion, i) = box.value.acks.removeValue(forKey: token) else { return }
        completion.complete(i, outcome)
    }

    func enqueue(_ message: ProtocolMessage, to node: NodeID) {
        var buffer = box.value.outgoing.removeValue(forKey: node) ?? newFrameBody()
        if buffer.readableBytes >= settings.checkpointChunkBytes {
            // Messages ready in one turn share a frame up to about a chunk's
            // size: checkpoint chunks each get a frame of their own, and no
            // frame grows past what the receiver accepts.
            sendFrame(buffer, to: node)
            buffer = newFrameBody()
        }
        if case .data(let m) = message {
            // A multicast goes to every member: encode it once.
            if box.value.lastData != m {
                box.value.lastDataBytes.clear()
                MessageCodec.encode(message, into: &box.value.lastDataBytes)
                box.value.lastData = m
            }
            buffer.writeImmutableBuffer(box.value.lastDataBytes)
        } else {
            MessageCodec.encode(message, into: &buffer)
        }
        box.value.outgoing[node] = buffer
    }

    func newFrameBody() -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(256)
        b.writeVarint(box.value.core.me.incarnation)
        return b
    }

    func flushOutgoing() {
        guard !box.value.outgoing.isEmpty else { return }
        let outgoing = box.value.outgoing
        box.value.outgoing.removeAll(keepingCapacity: true)
        for (node, body) in outgoing { sendFrame(body, to: node) }
    }

    func sendFrame(_ body: ByteBuffer, to node: NodeID) {
        guard let peer = box.value.names[node] else { return }
        if transport.send(to: peer, body) {
            box.value.counters.framesSent += 1
            box.value.counters.bytesSent += UInt64(body.readableBytes)
        }
    }

    func schedule(_ at: Tick) {
        guard at < box.value.timerAt, !box.value.stopped else { return }
        box.value.timer?.cancel()
        box.value.timerAt = at
        let delay = Int64(at) - Int64(now)
        box.value.timer = loop.scheduleTask(in: .milliseconds(max(delay, 0))) { self.timerFired() }
    }

    func observeFlush() {
        let flushing = peekCore { $0.isFlushing }
        if flushing, box.value.flushingSince == nil {
            box.value.flushingSince = .now()
        } else if !flushing, let since = box.value.flushingSince {
            box.value.flushingSince = nil
            let seconds = Double((NIODeadline.now() - since).nanoseconds) / 1e9
            box.value.counters.flushes += 1
            box.value.counters.flushSecondsTotal += seconds
            box.value.counters.lastFlushSeconds = seconds
        }
    }

    func publishStatus(_ app: (any ClusterApplication)?) {
        let core = box.value.core  // rare: only when the status may have changed
        let status: ClusterStatus
        if let view = core.currentView {
            let state = core.isInPrimary ? "member" : "minority"
            status = ClusterStatus(
                node: settings.nodeName, incarnation: core.me.incarnation, view: view.id.epoch,
                members: view.members.map { name($0.node) }, coordinator: name(view.coordinator.node),
                primary: core.isInPrimary, state: state)
        } else {
            status = ClusterStatus(
                node: settings.nodeName, incarnation: core.me.incarnation, view: 0, members: [], coordinator: nil,
                primary: false, state: box.value.stopped ? "left" : "joining")
        }
        guard status != box.value.lastStatus else { return }
        if let last = box.value.lastStatus, status.members.count < last.members.count, status.view > last.view {
            box.value.counters.suspicions += UInt64(last.members.count - status.members.count)
        }
        box.value.lastStatus = status
        snapshot.withLockedValue { $0 = status }
        logger.info(
            "cluster view",
            metadata: [
                "view": "\(status.view)", "members": "\(status.members)", "primary": "\(status.primary)", "state": "\(status.state)",
            ])
        app?.clusterStatusChanged(status)
    }
}
