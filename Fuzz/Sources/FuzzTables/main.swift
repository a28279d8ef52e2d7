// The replicated tables' decoders of a peer's bytes, and the ack body of a
// client. The control byte's low 3 bits pick the decoder:
//   0  `LockTable(decoding:limits:)`: a `$piglix.locks` checkpoint
//   1  `LockOperation(decoding:)`: a lock operation delivered on `$piglix.locks`
//   2  `QueueControl.decode`: a join/leave/ack record delivered on `$piglix.queues`
//   3  `QueueCheckpointCodec.decode`: a `$piglix.queues` checkpoint chunk
//   4  the body of `POST /v1/ack` as the route reads it (`AckRequest`:
//      `JSONParser.parse`, the `queue`/`ids` shape, `Broker.validateQueueName`),
//      then `MessageID(_:)` per id, as `Broker.ack` parses them
//   5…7 a lock table (`u16` length first) then steps applied to it: views,
//      releases by token, lock operations (`u8` length first)
// Bit 3 picks small limits (locks 3, waiters 2; topic bytes 64) over the
// defaults. `LockRecord` (PiglixWire) has an encoder only: nothing to feed.
// Properties: no trap; whatever decodes re-encodes to bytes that decode to
// the same value; a decoded lock table is within its limits, and after any
// operations still encodes to a table its own decoder accepts.
import FuzzSupport
import NIOCore
import PiglixBroker
import PiglixGroups
import PiglixTopics
import PiglixWire

func lockLimits(_ small: Bool) -> LockLimits { small ? LockLimits(locksMax: 3, waitersMax: 2) : .default }

func topicLimits(_ small: Bool) -> TopicLimits {
    guard small else { return .default }
    var l = TopicLimits.default
    l.bytesMax = 64
    return l
}

/// Decodes a lock table and checks its bounds and its round trip.
func lockTable(_ bytes: [UInt8], limits: LockLimits) -> LockTable? {
    guard let table = try? LockTable(decoding: bytes, limits: limits) else { return nil }
    check(table.lockCount <= limits.locksMax, "\(table.lockCount) locks decoded past the bound \(limits.locksMax)")
    for (name, lock) in table.locks {
        check(lock.queue.count <= limits.waitersMax, "lock \(name): \(lock.queue.count) waiters past the bound \(limits.waitersMax)")
    }
    lockTableRoundTrip(table)
    return table
}

func lockTableRoundTrip(_ table: LockTable) {
    let again: LockTable
    do { again = try LockTable(decoding: table.encoded(), limits: table.limits) } catch {
        fuzzFailure("lock table re-encodes to bytes its decoder refuses: \(error)")
    }
    check(again == table, "lock table came back different: \(again) vs \(table)")
}

func lockOperation(_ bytes: [UInt8]) -> LockOperation? {
    guard let op = try? LockOperation(decoding: bytes) else { return nil }
    guard let again = try? LockOperation(decoding: op.encoded()) else { fuzzFailure("\(op) re-encodes to bytes that do not decode") }
    check(again == op, "lock operation \(op) came back as \(again)")
    return op
}

func queueControl(_ bytes: [UInt8]) {
    guard let control = QueueControl.decode(bytes) else { return }
    guard let again = QueueControl.decode(control.encode()) else { fuzzFailure("\(control) re-encodes to bytes that do not decode") }
    check(again == control, "queue control \(control) came back as \(again)")
}

func queueCheckpoint(_ bytes: [UInt8], limits: TopicLimits) {
    let decoded: (cut: ClusterPosition, items: [QueueCheckpointItem])?
    do { decoded = try QueueCheckpointCodec.decode(bytes, topicLimits: limits) } catch { return }
    guard let decoded else { return }
    // Items hold messages (not Equatable): compare encodings. The first
    // re-encoding is canonical (replacement characters, ids from the keys),
    // so it must decode and re-encode to itself.
    let once = QueueCheckpointCodec.encode(decoded.items[...], cut: decoded.cut)
    let second: (cut: ClusterPosition, items: [QueueCheckpointItem])?
    do { second = try QueueCheckpointCodec.decode(once, topicLimits: limits) } catch {
        fuzzFailure("queue checkpoint re-encodes to bytes that do not decode: \(error)")
    }
    guard let second else { fuzzFailure("queue checkpoint re-encodes to an empty chunk") }
    check(second.cut == decoded.cut, "queue checkpoint cut \(decoded.cut) came back as \(second.cut)")
    check(second.items.count == decoded.items.count, "\(decoded.items.count) items came back as \(second.items.count)")
    let twice = QueueCheckpointCodec.encode(second.items[...], cut: second.cut)
    check(twice == once, "queue checkpoint re-encoding is not stable")
}

/// `POST /v1/ack`: the route's reading of the body (`AckRequest`), then
/// each id as `Broker.ack` parses it.
func ackBody(_ bytes: [UInt8]) {
    guard let ack = try? bytes.withUnsafeBytes({ raw throws(AckRequest.Invalid) in try AckRequest(parsing: raw) }) else { return }
    check(ack.ids.count <= AckRequest.idsMax && !ack.ids.isEmpty, "an ack of \(ack.ids.count) ids was read")
    for text in ack.ids {
        guard let id = PiglixWire.MessageID(text) else { continue }
        guard let again = PiglixWire.MessageID(id.description) else { fuzzFailure("id \(id) prints as \(id.description), which does not parse") }
        check(again == id, "id \(id) came back as \(again)")
    }
}

/// A table from a peer, then operations and views applied to it: the table
/// must not trap and must stay one its own decoder accepts.
func lockTableThenOperations(_ data: [UInt8], limits: LockLimits) {
    var input = FuzzInput(data)
    let length = Int(input.byte()) << 8 | Int(input.byte())
    guard var table = lockTable(Array(input.take(length)), limits: limits) else { return }
    var round: UInt64 = 0
    while !input.isEmpty {
        round += 1
        let step = input.byte()
        switch step % 4 {
        case 0:
            // A view: the owners known so far, one dropped, one added.
            var owners = table.members ?? Set(table.locks.values.flatMap { [$0.holder?.owner].compactMap { $0 } + $0.queue.map(\.owner) })
            if let drop = owners.sorted().dropFirst(Int(step >> 2) % max(owners.count, 1)).first { owners.remove(drop) }
            owners.insert("f/\(step >> 4)")
            _ = table.viewChanged(id: table.viewID &+ UInt64(step >> 2), members: owners)
        case 1:
            // The holder of a lock releases by token.
            let names = table.locks.keys.sorted()
            if let name = names.dropFirst(Int(step >> 2) % max(names.count, 1)).first, let h = table.holder(of: name) {
                _ = table.release(name, token: h.token)
            }
        default:
            let length = Int(input.byte())
            guard let op = lockOperation(Array(input.take(length))) else { continue }
            _ = table.apply(op)
        }
        check(table.lockCount <= limits.locksMax, "\(table.lockCount) locks past the bound \(limits.locksMax)")
        if round % 8 == 0 { lockTableRoundTrip(table) }
    }
    lockTableRoundTrip(table)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let small = control & 8 != 0
    let bytes = Array(input.rest())
    switch control & 7 {
    case 0: _ = lockTable(bytes, limits: lockLimits(small))
    case 1: _ = lockOperation(bytes)
    case 2: queueControl(bytes)
    case 3: queueCheckpoint(bytes, limits: topicLimits(small))
    case 4: ackBody(bytes)
    default: lockTableThenOperations(bytes, limits: lockLimits(small))
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzz, seeds: seeds) }
}

// MARK: Seeds, from the real encoders

func seeds() -> [[UInt8]] {
    let a1 = LockRequest(owner: "n1/1795449495851490", id: 1)
    let b1 = LockRequest(owner: "n2/7", id: 1)
    let b2 = LockRequest(owner: "n2/7", id: 2)
    var table = LockTable(firstToken: LockTable.firstToken(unixMilliseconds: 1_795_449_495_851))
    _ = table.viewChanged(id: 4 << 32 | 2, members: [a1.owner, b1.owner])
    _ = table.request("orders", a1)
    _ = table.request("orders", b1)
    _ = table.request("orders", b2)
    _ = table.request("billing.eu:1", b1)
    var small = LockTable(limits: lockLimits(true))
    _ = small.request("x", a1)
    _ = small.request("x", b1)
    let operations: [LockOperation] = [
        .request(lock: "orders", a1), .release(lock: "orders", b1), .releaseToken(lock: "billing.eu:1", token: table.nextToken - 1),
    ]
    var out: [[UInt8]] = []
    out.append([0] + table.encoded())
    out.append([0] + LockTable().encoded())
    out.append([8] + small.encoded())
    for op in operations { out.append([1] + op.encoded()) }

    let key = QueueMessageKey(view: 3, origin: 1, seq: 42)
    let controls: [QueueControl] = [
        .join(queue: "jobs", pattern: "jobs.>", local: 17), .leave(queue: "jobs", local: 17),
        .ack(queue: "jobs", keys: [key, QueueMessageKey(view: 3, origin: 0, seq: 7)]),
    ]
    for c in controls { out.append([2] + c.encode()) }

    let member = QueueMember(process: ProcessID(node: NodeID(0x1234_5678_9abc), incarnation: 1_795_449_495_851_490), local: 17)
    let cut = ClusterPosition(view: 3, delivered: [42, 7])
    var message = StoredMessage(
        id: PiglixWire.MessageID(sequence: 0, position: cut), topic: "jobs.resize", payload: ByteBuffer(string: "{\"w\":640}"),
        delivery: .total, headers: [MessageHeader(name: "content-type", value: "application/json")], payloadIsText: true)
    message.source = MessageSource(view: 3, origin: 1, seq: 42)
    let pattern = try! TopicPattern("jobs.>")
    let items: [QueueCheckpointItem] = [
        .queue(name: "jobs", pattern: pattern, members: [member], counter: 5, backlog: [QueueMessageKey(view: 3, origin: 0, seq: 8)]),
        .entry(queue: "jobs", .init(key: key, payload: message, holder: member, assignments: 1)),
        .entry(queue: "jobs", .init(key: QueueMessageKey(view: 3, origin: 0, seq: 8), payload: message, holder: nil, assignments: 2)),
    ]
    out.append([3] + QueueCheckpointCodec.encode(items[...], cut: cut))
    out.append([11] + QueueCheckpointCodec.encode(items[..<1], cut: ClusterPosition(view: 0, delivered: [])))

    let ids = [PiglixWire.MessageID(sequence: 0, position: cut).description, "v3.41.7", "0000000a-12"]
    out.append([4] + Array("{\"queue\":\"jobs\",\"ids\":[\(ids.map { "\"\($0)\"" }.joined(separator: ","))]}".utf8))

    // A table, then operations (each `u8 length` + bytes) and views.
    let encoded = table.encoded()
    var steps: [UInt8] = [UInt8(encoded.count >> 8), UInt8(encoded.count & 0xFF)] + encoded
    for op in operations + [.request(lock: "new", b2)] {
        let bytes = op.encoded()
        steps += [2, UInt8(bytes.count)] + bytes
    }
    steps += [0, 1, 4, 5]
    out.append([5] + steps)
    return out
}
