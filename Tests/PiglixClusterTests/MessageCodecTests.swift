import NIOCore
import PiglixGroups
import PiglixTopics
import XCTest

@testable import PiglixCluster

/// The inter-node encoding: every protocol message survives a round trip,
/// several share one frame body, and corrupt bytes are an error, not a crash
/// or an allocation of whatever size a length claims.
final class MessageCodecTests: XCTestCase {
    let a = ProcessID(node: nodeID(forName: "n1"), incarnation: 1_795_449_495_851_490)
    let b = ProcessID(node: nodeID(forName: "n2"), incarnation: 7)

    func sample() throws -> [ProtocolMessage] {
        let view = ViewID(epoch: 3, coordinator: a)
        let cluster = ClusterView(id: view, members: [a, b])
        let pattern = try TopicPattern("sensors.*.temp")
        let data = DataMessage(
            id: MessageID(view: view, origin: 1, seq: 42), publish: PublishID(origin: b, seq: 9), session: 77, level: .safe,
            kind: .publish(.topic(try Topic("sensors.paris.temp"))), payload: Array("21.5".utf8))
        let digest = Digest(received: [4, 42], ordersKnown: 17)
        let install = Install(
            previous: view, view: ClusterView(id: ViewID(epoch: 4, coordinator: a), members: [a]), cut: [4, 42], ordersCut: 17,
            messages: [data], ordersFirst: 15, orders: [OrderEntry(origin: 1, seq: 41), OrderEntry(origin: 0, seq: 4)],
            groups: [GroupRecord(pattern: pattern, members: [a, b], ready: [true, false], view: 300)],
            readyAtCut: [GroupMember(pattern: pattern, member: b)])
        return [
            .data(data),
            .data(DataMessage(id: data.id, publish: data.publish, session: 0, level: .total, kind: .groupJoin(pattern), payload: [])),
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
    }

    func testEveryMessageSurvivesARoundTripInOneFrameBody() throws {
        let messages = try sample()
        var body = ByteBuffer()
        for m in messages { MessageCodec.encode(m, into: &body) }
        var decoded: [ProtocolMessage] = []
        while body.readableBytes > 0 { decoded.append(try MessageCodec.decode(&body)) }
        XCTAssertEqual(decoded, messages)
    }

    func testCorruptBytesAreAnErrorNotACrash() throws {
        for m in try sample() {
            var whole = ByteBuffer()
            MessageCodec.encode(m, into: &whole)
            // Every truncation fails cleanly.
            for cut in 0..<whole.readableBytes {
                var part = whole.getSlice(at: 0, length: cut)!
                XCTAssertThrowsError(try MessageCodec.decode(&part))
            }
        }
        var unknown = ByteBuffer(bytes: [200, 1, 2])
        XCTAssertThrowsError(try MessageCodec.decode(&unknown))
        // A length far beyond the bytes left is refused before allocating.
        var huge = ByteBuffer(bytes: [4, 3, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        XCTAssertThrowsError(try MessageCodec.decode(&huge))
    }

    func testVarintsOfEveryLengthMatchTheBytewiseEncoding() throws {
        var values: [UInt64] = [0, 1, 127, 128, 255, 300, 16_383, 16_384, 1_795_449_495_851_490, .max, .max - 1, 1 << 63]
        for bits in 1...63 { values += [(1 << UInt64(bits)) - 1, 1 << UInt64(bits), (1 << UInt64(bits)) + 1] }
        for _ in 0..<1000 { values.append(UInt64.random(in: 0...UInt64.max) >> UInt64.random(in: 0...63)) }
        for value in values {
            var b = ByteBuffer()
            b.writeInteger(UInt8(0xAA))  // not at offset 0
            b.writeVarint(value)
            b.writeInteger(UInt8(0x55))
            // The plain LEB128 bytes.
            var expected: [UInt8] = [0xAA]
            var v = value
            while v >= 0x80 {
                expected.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            expected.append(UInt8(v))
            expected.append(0x55)
            XCTAssertEqual(Array(b.readableBytesView), expected, "\(value)")
            b.moveReaderIndex(forwardBy: 1)
            XCTAssertEqual(try b.readVarint(), value)
        }
    }

    func testNodeIDsFollowFromNamesAlone() {
        XCTAssertEqual(nodeID(forName: "n1"), nodeID(forName: "n1"))
        XCTAssertNotEqual(nodeID(forName: "n1"), nodeID(forName: "n2"))
    }

    /// Byte strings (a checkpoint's state) are bounded by the frame, not by
    /// the item-count limit: 0, 1, countMax and countMax + 1 bytes all round-trip
    /// (a 20 MB checkpoint failed before: "count … exceeds …").
    func testCheckpointStateAtTheCountBoundariesRoundTrips() throws {
        let pattern = try TopicPattern("big.>")
        let view = ViewID(epoch: 2, coordinator: a)
        for size in [0, 1, MessageCodec.countMax, MessageCodec.countMax + 1] {
            let state = [UInt8](repeating: 0x5A, count: size)
            let message = ProtocolMessage.checkpointChunk(
                CheckpointChunk(pattern: pattern, request: 1, index: 0, cut: StreamPosition(view: view, delivered: [3, 4]), skip: [], state: state, last: true))
            var buffer = ByteBuffer()
            MessageCodec.encode(message, into: &buffer)
            let decoded = try MessageCodec.decode(&buffer)
            guard case .checkpointChunk(let got) = decoded else { return XCTFail("decoded \(decoded)") }
            XCTAssertEqual(got.state.count, size)
            XCTAssertEqual(buffer.readableBytes, 0)
        }
    }

    /// Item counts stop at `countMax`: one more is refused before allocating.
    func testItemCountsAtTheLimitAreRefusedAboveIt() {
        for (count, ok) in [(0, true), (1, true), (MessageCodec.countMax, true), (MessageCodec.countMax + 1, false)] {
            var b = ByteBuffer()
            b.writeVarint(UInt64(count))
            b.writeBytes([UInt8](repeating: 0, count: count))
            let result = Result { () throws(MessageDecodingError) -> Int in try b.readCount() }
            switch (result, ok) {
            case (.success(let n), true): XCTAssertEqual(n, count)
            case (.failure(let error), false): XCTAssertTrue("\(error)".contains("over the limit"), "\(error)")
            default: XCTFail("count \(count): \(result)")
            }
        }
    }
}
