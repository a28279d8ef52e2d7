// The inter-node byte stream as a peer's connection sees it: frames cut by
// `PeerFrame.read` (what `PeerFrameDecoder` does), `hello` bodies parsed by
// `Hello.decode`, `messages` bodies (and `compressedMessages` ones after
// bounded zlib inflation, as PeerHandler does) read as an incarnation then
// `MessageCodec.decode` until empty, as `ClusterNode.received` does.
// Properties: no trap; whatever decodes re-encodes to something that
// decodes to the same value.
import CompressNIO
import FuzzSupport
import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics

/// Small, so the length checks are reached; the real default is 64 MiB.
let frameBytesMax = 1 << 16

func roundTrip(_ message: ProtocolMessage) {
    var again = ByteBuffer()
    MessageCodec.encode(message, into: &again)
    var copy = again
    do {
        let decoded = try MessageCodec.decode(&copy)
        check(decoded == message, "re-decoded \(decoded) differs from \(message)")
        check(copy.readableBytes == 0, "\(copy.readableBytes) bytes left after re-decoding \(message)")
    } catch {
        fuzzFailure("\(message) re-encodes to bytes that do not decode: \(error)")
    }
}

func messagesBody(_ body: ByteBuffer) {
    var body = body
    do {
        _ = try MessageCodec.decodeIncarnation(&body)
        while body.readableBytes > 0 {
            let before = body.readableBytes
            let message = try MessageCodec.decode(&body)
            check(body.readableBytes < before, "decode consumed nothing")
            roundTrip(message)
        }
    } catch {
        // A peer that sends garbage loses the rest of its frame.
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var stream = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    // Fragments gathered until the messages frame that ends them, as
    // PeerHandler does (bounded the same way).
    var fragments: ByteBuffer?
    while true {
        let frame: PeerFrame?
        do { frame = try PeerFrame.read(from: &stream, frameBytesMax: frameBytesMax) } catch { return 0 }
        guard let frame else { return 0 }
        switch frame.kind {
        case .hello:
            guard let hello = try? Hello.decode(frame.body) else { continue }
            guard let again = try? Hello.decode(hello.encode()) else { fuzzFailure("\(hello) re-encodes to a bad hello") }
            check(again == hello, "hello \(hello) came back as \(again)")
        case .fragment:
            var body = frame.body
            guard (fragments?.readableBytes ?? 0) + body.readableBytes <= 4 * frameBytesMax else { return 0 }
            if fragments == nil { fragments = ByteBuffer() }
            fragments!.writeBuffer(&body)
        case .messages:
            if var gathered = fragments {
                var body = frame.body
                gathered.writeBuffer(&body)
                fragments = nil
                messagesBody(gathered)
            } else {
                messagesBody(frame.body)
            }
        case .compressedMessages:
            var body = frame.body
            guard let plain = try? body.decompress(with: .zlib(), maxSize: frameBytesMax) else { continue }
            check(plain.readableBytes <= frameBytesMax, "inflated to \(plain.readableBytes) bytes over \(frameBytesMax)")
            messagesBody(plain)
        case .proof, .sealed:
            // Authenticated under the cluster key: random bytes fail the
            // MAC before any parsing (ClusterKey.swift).
            continue
        }
    }
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

func seeds() -> [[UInt8]] {
    let a = ProcessID(node: NodeID(0x1234_5678_9abc), incarnation: 1_795_449_495_851_490)
    let b = ProcessID(node: NodeID(7), incarnation: 7)
    let view = ViewID(epoch: 3, coordinator: a)
    let cluster = ClusterView(id: view, members: [a, b])
    let pattern = try! TopicPattern("sensors.*.temp")
    let data = DataMessage(
        id: MessageID(view: view, origin: 1, seq: 42), publish: PublishID(origin: b, seq: 9), session: 77, level: .safe,
        kind: .publish(.topic(try! Topic("sensors.paris.temp"))), payload: Array("21.5".utf8))
    let digest = Digest(received: [4, 42], ordersKnown: 17)
    let install = Install(
        previous: view, view: ClusterView(id: ViewID(epoch: 4, coordinator: a), members: [a]), cut: [4, 42], ordersCut: 17,
        messages: [data], ordersFirst: 15, orders: [OrderEntry(origin: 1, seq: 41), OrderEntry(origin: 0, seq: 4)],
        groups: [GroupRecord(pattern: pattern, members: [a, b], ready: [true, false], view: 4 << 32 | 2)],
        readyAtCut: [GroupMember(pattern: pattern, member: b)])
    let messages: [ProtocolMessage] = [
        .data(data),
        .data(DataMessage(id: data.id, publish: data.publish, session: 0, level: .total, kind: .groupJoin(pattern), payload: [])),
        .data(DataMessage(id: data.id, publish: data.publish, session: 1, level: .fifo, kind: .publish(.group(pattern)), payload: [1])),
        .data(DataMessage(id: data.id, publish: data.publish, session: 1, level: .fifo, kind: .groupLeave(pattern), payload: [])),
        .data(DataMessage(id: data.id, publish: data.publish, session: 1, level: .fifo, kind: .groupReady(pattern), payload: [])),
        .order(view: view, first: 15, entries: [OrderEntry(origin: 1, seq: 41)]),
        .ack(view: view, digest: digest), .stable(view: view, digest: digest),
        .heartbeat(view: view, digest: digest, stable: nil), .heartbeat(view: view, digest: digest, stable: digest),
        .nak(view: view, from: 3), .orderNak(view: view, from: 2), .joinRequest(b),
        .flushStart(previous: view, proposal: cluster),
        .flushReport(
            FlushReport(
                previous: view, ballot: install.view.id, digest: digest, knownStable: digest, messages: [data], ordersFirst: 15,
                orders: install.orders, delivered: [4, 40], floors: [1, 2], totalDelivered: 16, accepted: install,
                acceptedBallot: install.view.id, activeGroups: [pattern])),
        .flushReject(previous: view, promised: install.view.id), .propose(ballot: install.view.id, install),
        .accepted(ballot: install.view.id), .install(install), .installRequest(view: view), .viewNotice(cluster),
        .checkpointRequest(pattern: pattern, after: StreamPosition(view: view, delivered: [1, 2]), request: 7),
        .checkpointChunk(
            CheckpointChunk(
                pattern: pattern, request: 7, index: 0, cut: StreamPosition(view: view, delivered: [4, 42]), skip: [data.publish],
                state: [0, 1, 2, 255], last: false)),
        .checkpointChunk(CheckpointChunk(pattern: pattern, request: 7, index: 3, cut: nil, skip: [], state: [], last: true)),
        .checkpointAck(pattern: pattern, request: 7, index: 3),
    ]
    let hello = Hello(name: "n1", incarnation: a.incarnation, listenAddress: "10.0.0.1:7946", keyed: false, nonce: Array(repeating: 0xAB, count: 32))
    let helloFrame = peerFrame(kind: 1, body: hello.encode().bytes)
    var out: [[UInt8]] = []
    // Each message alone in a frame, after a hello.
    for message in messages {
        var body = ByteBuffer()
        MessageCodec.encodeIncarnation(a.incarnation, into: &body)
        MessageCodec.encode(message, into: &body)
        out.append(helloFrame + peerFrame(kind: 2, body: body.bytes))
    }
    // All of them in one frame, plain and compressed.
    var all = ByteBuffer()
    MessageCodec.encodeIncarnation(a.incarnation, into: &all)
    for message in messages { MessageCodec.encode(message, into: &all) }
    out.append(helloFrame + peerFrame(kind: 2, body: all.bytes))
    var plain = all
    let compressed = try! plain.compress(with: .zlib())
    out.append(helloFrame + peerFrame(kind: 3, body: compressed.bytes))
    // A keyed hello and a proof frame.
    var keyed = hello
    keyed.keyed = true
    out.append(peerFrame(kind: 1, body: keyed.encode().bytes) + peerFrame(kind: 4, body: Array(repeating: 1, count: 32)))
    return out
}
