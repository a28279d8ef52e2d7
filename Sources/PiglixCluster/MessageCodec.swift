import NIOCore
import PiglixGroups
import PiglixTopics

/// Why a peer's bytes could not be decoded. The connection that sent them is
/// closed (a peer that speaks garbage is treated like a crashed one).
public struct MessageDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "undecodable protocol message: \(reason)" }
}

/// The binary encoding of `ProtocolMessage` between nodes (docs/protocol.md,
/// "Between nodes"). Integers are LEB128 varints, strings and byte strings
/// are varint-length-prefixed, every message starts with a one-byte tag. A
/// `messages` frame body is the sender's incarnation (varint) followed by
/// any number of encoded messages: that is how several protocol messages
/// ready in one event-loop turn share one frame and one write.
public enum MessageCodec {
    // Tags: stable on the wire, never reuse one.
    enum Tag: UInt8 {
        case data = 1, order, ack, stable, heartbeat, nak, orderNak, joinRequest, flushStart, flushReport
        case flushReject, propose, accepted, install, installRequest, viewNotice, checkpointRequest, checkpointChunk
        case checkpointAck, standInPromise
    }

    /// Limits applied while decoding, so a corrupt length cannot allocate.
    public static let countMax = 1 << 24
    /// Topic limits for decoding names: generous, a peer validated them.
    static let limits = TopicLimits(tokensMax: 1024, bytesMax: 1 << 16, tokenBytesMax: 1 << 16)

    public static func encode(_ m: ProtocolMessage, into b: inout ByteBuffer) {
        switch m {
        case .data(let d):
            b.writeInteger(Tag.data.rawValue)
            b.writeDataMessage(d)
        case .order(let v, let first, let entries):
            b.writeInteger(Tag.order.rawValue)
            b.writeViewID(v)
            b.writeVarint(first)
            b.writeVarint(UInt64(entries.count))
            for e in entries {
                b.writeVarint(UInt64(e.origin))
                b.writeVarint(e.seq)
            }
        case .ack(let v, let d):
            b.writeInteger(Tag.ack.rawValue)
            b.writeViewID(v)
            b.writeDigest(d)
        case .stable(let v, let d):
            b.writeInteger(Tag.stable.rawValue)
            b.writeViewID(v)
            b.writeDigest(d)
        case .heartbeat(let v, let d, let st):
            b.writeInteger(Tag.heartbeat.rawValue)
            b.writeViewID(v)
            b.writeDigest(d)
            b.writeOptional(st) { $0.writeDigest($1) }
        case .nak(let v, let from):
            b.writeInteger(Tag.nak.rawValue)
            b.writeViewID(v)
            b.writeVarint(from)
        case .orderNak(let v, let from):
            b.writeInteger(Tag.orderNak.rawValue)
            b.writeViewID(v)
            b.writeVarint(from)
        case .joinRequest(let p):
            b.writeInteger(Tag.joinRequest.rawValue)
            b.writeProcessID(p)
        case .flushStart(let previous, let proposal):
            b.writeInteger(Tag.flushStart.rawValue)
            b.writeViewID(previous)
            b.writeClusterView(proposal)
        case .flushReport(let r):
            b.writeInteger(Tag.flushReport.rawValue)
            b.writeViewID(r.previous)
            b.writeViewID(r.ballot)
            b.writeDigest(r.digest)
            b.writeDigest(r.knownStable)
            b.writeArray(r.messages) { $0.writeDataMessage($1) }
            b.writeVarint(r.ordersFirst)
            b.writeOrderEntries(r.orders)
            b.writeVarints(r.delivered)
            b.writeVarints(r.floors)
            b.writeVarint(r.totalDelivered)
            b.writeOptional(r.accepted) { $0.writeInstall($1) }
            b.writeOptional(r.acceptedBallot) { $0.writeViewID($1) }
            b.writeArray(r.activeGroups) { $0.writeVarString($1.name) }
        case .flushReject(let previous, let promised):
            b.writeInteger(Tag.flushReject.rawValue)
            b.writeViewID(previous)
            b.writeViewID(promised)
        case .propose(let ballot, let inst):
            b.writeInteger(Tag.propose.rawValue)
            b.writeViewID(ballot)
            b.writeInstall(inst)
        case .accepted(let ballot):
            b.writeInteger(Tag.accepted.rawValue)
            b.writeViewID(ballot)
        case .standInPromise(let previous, let ballot, let accepted, let acceptedBallot):
            b.writeInteger(Tag.standInPromise.rawValue)
            b.writeViewID(previous)
            b.writeViewID(ballot)
            b.writeOptional(accepted) { $0.writeInstall($1) }
            b.writeOptional(acceptedBallot) { $0.writeViewID($1) }
        case .install(let inst):
            b.writeInteger(Tag.install.rawValue)
            b.writeInstall(inst)
        case .installRequest(let v):
            b.writeInteger(Tag.installRequest.rawValue)
            b.writeViewID(v)
        case .viewNotice(let v):
            b.writeInteger(Tag.viewNotice.rawValue)
            b.writeClusterView(v)
        case .checkpointRequest(let p, let after, let request):
            b.writeInteger(Tag.checkpointRequest.rawValue)
            b.writeVarString(p.name)
            b.writeStreamPosition(after)
            b.writeVarint(request)
        case .checkpointChunk(let c):
            b.writeInteger(Tag.checkpointChunk.rawValue)
            b.writeVarString(c.pattern.name)
            b.writeVarint(c.request)
            b.writeVarint(UInt64(c.index))
            b.writeOptional(c.cut) { b, cut in b.writeStreamPosition(cut) }
            b.writeArray(c.skip) { b, id in
                b.writeProcessID(id.origin)
                b.writeVarint(id.seq)
            }
            b.writeInteger(UInt8(c.last ? 1 : 0))
            b.writeVarBytes(c.state)
        case .checkpointAck(let p, let request, let index):
            b.writeInteger(Tag.checkpointAck.rawValue)
            b.writeVarString(p.name)
            b.writeVarint(request)
            b.writeVarint(UInt64(index))
        }
    }

    /// Reads the sender's incarnation that begins a `messages` frame body;
    /// the encoded messages follow it.
    public static func decodeIncarnation(_ b: inout ByteBuffer) throws(MessageDecodingError) -> UInt64 {
        try b.readVarint()
    }

    /// Writes the incarnation that begins a `messages` frame body.
    public static func encodeIncarnation(_ incarnation: UInt64, into b: inout ByteBuffer) {
        b.writeVarint(incarnation)
    }

    /// Decodes one message from the front of `b`.
    public static func decode(_ b: inout ByteBuffer) throws(MessageDecodingError) -> ProtocolMessage {
        guard let raw: UInt8 = b.readInteger() else { throw MessageDecodingError("empty message") }
        guard let tag = Tag(rawValue: raw) else { throw MessageDecodingError("unknown tag \(raw)") }
        switch tag {
        case .data:
            return .data(try b.readDataMessage())
        case .order:
            let v = try b.readViewID()
            let first = try b.readVarint()
            let entries = try b.readOrderEntries()
            return .order(view: v, first: first, entries: entries)
        case .ack:
            return .ack(view: try b.readViewID(), digest: try b.readDigest())
        case .stable:
            return .stable(view: try b.readViewID(), digest: try b.readDigest())
        case .heartbeat:
            let v = try b.readViewID()
            let d = try b.readDigest()
            let st = try b.readOptional { b throws(MessageDecodingError) in try b.readDigest() }
            return .heartbeat(view: v, digest: d, stable: st)
        case .nak:
            return .nak(view: try b.readViewID(), from: try b.readVarint())
        case .orderNak:
            return .orderNak(view: try b.readViewID(), from: try b.readVarint())
        case .joinRequest:
            return .joinRequest(try b.readProcessID())
        case .flushStart:
            return .flushStart(previous: try b.readViewID(), proposal: try b.readClusterView())
        case .flushReport:
            let previous = try b.readViewID()
            let ballot = try b.readViewID()
            let digest = try b.readDigest()
            let knownStable = try b.readDigest()
            let messages = try b.readArray { b throws(MessageDecodingError) in try b.readDataMessage() }
            let ordersFirst = try b.readVarint()
            let orders = try b.readOrderEntries()
            let delivered = try b.readVarints()
            let floors = try b.readVarints()
            let totalDelivered = try b.readVarint()
            let accepted = try b.readOptional { b throws(MessageDecodingError) in try b.readInstall() }
            let acceptedBallot = try b.readOptional { b throws(MessageDecodingError) in try b.readViewID() }
            let activeGroups = try b.readArray { b throws(MessageDecodingError) in try b.readPattern() }
            return .flushReport(
                FlushReport(
                    previous: previous, ballot: ballot, digest: digest, knownStable: knownStable, messages: messages,
                    ordersFirst: ordersFirst, orders: orders, delivered: delivered, floors: floors,
                    totalDelivered: totalDelivered, accepted: accepted, acceptedBallot: acceptedBallot,
                    activeGroups: activeGroups))
        case .flushReject:
            return .flushReject(previous: try b.readViewID(), promised: try b.readViewID())
        case .propose:
            return .propose(ballot: try b.readViewID(), try b.readInstall())
        case .accepted:
            return .accepted(ballot: try b.readViewID())
        case .install:
            return .install(try b.readInstall())
        case .installRequest:
            return .installRequest(view: try b.readViewID())
        case .viewNotice:
            return .viewNotice(try b.readClusterView())
        case .checkpointRequest:
            return .checkpointRequest(pattern: try b.readPattern(), after: try b.readStreamPosition(), request: try b.readVarint())
        case .checkpointChunk:
            let p = try b.readPattern()
            let request = try b.readVarint()
            let index = try b.readIndex()
            let cut = try b.readOptional { b throws(MessageDecodingError) in try b.readStreamPosition() }
            let skip = try b.readArray { b throws(MessageDecodingError) in PublishID(origin: try b.readProcessID(), seq: try b.readVarint()) }
            guard let last: UInt8 = b.readInteger(), last <= 1 else { throw MessageDecodingError("bad last flag") }
            let state = try b.readVarBytes()
            return .checkpointChunk(CheckpointChunk(pattern: p, request: request, index: index, cut: cut, skip: skip, state: state, last: last == 1))
        case .checkpointAck:
            return .checkpointAck(pattern: try b.readPattern(), request: try b.readVarint(), index: try b.readIndex())
        case .standInPromise:
            return .standInPromise(
                previous: try b.readViewID(), ballot: try b.readViewID(),
                accepted: try b.readOptional { b throws(MessageDecodingError) in try b.readInstall() },
                acceptedBallot: try b.readOptional { b throws(MessageDecodingError) in try b.readViewID() })
        }
    }
}

// MARK: - Writing

extension ByteBuffer {
    /// LEB128: seven bits per byte, low bits first.
    /// Encoded into a register first, then written with one call: a byte
    /// per `writeInteger` cost a capacity check and a copy-on-write check
    /// each (an incarnation, a microsecond timestamp, takes 8 bytes).
    @inlinable
    mutating func writeVarint(_ value: UInt64) {
        if value < 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: value))
            return
        }
        var v = value
        var low: UInt64 = 0  // bytes 0..<8, little-endian
        var count = 0
        while v >= 0x80 && count < 8 {
            low |= (v & 0x7F | 0x80) << (8 * UInt64(count))
            v >>= 7
            count += 1
        }
        if count < 8 {
            low |= v << (8 * UInt64(count))
            count += 1
            _ = withUnsafeBytes(of: low.littleEndian) { writeBytes(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        } else {
            // Nine or ten bytes (values of 2^56 and more).
            writeInteger(low, endianness: .little)
            while v >= 0x80 {
                writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            writeInteger(UInt8(v))
        }
    }

    mutating func writeVarString(_ s: String) {
        writeVarint(UInt64(s.utf8.count))
        writeString(s)
    }

    mutating func writeVarBytes(_ bytes: [UInt8]) {
        writeVarint(UInt64(bytes.count))
        writeBytes(bytes)
    }

    mutating func writeVarints(_ values: [UInt64]) {
        writeVarint(UInt64(values.count))
        for v in values { writeVarint(v) }
    }

    mutating func writeArray<T>(_ items: [T], _ write: (inout ByteBuffer, T) -> Void) {
        writeVarint(UInt64(items.count))
        for item in items { write(&self, item) }
    }

    mutating func writeOptional<T>(_ value: T?, _ write: (inout ByteBuffer, T) -> Void) {
        if let value {
            writeInteger(UInt8(1))
            write(&self, value)
        } else {
            writeInteger(UInt8(0))
        }
    }

    mutating func writeProcessID(_ p: ProcessID) {
        writeVarint(p.node.rawValue)
        writeVarint(p.incarnation)
    }

    mutating func writeViewID(_ v: ViewID) {
        writeVarint(v.epoch)
        writeProcessID(v.coordinator)
    }

    mutating func writeClusterView(_ v: ClusterView) {
        writeViewID(v.id)
        writeArray(v.members) { $0.writeProcessID($1) }
    }

    mutating func writeDigest(_ d: Digest) {
        writeVarints(d.received)
        writeVarint(d.ordersKnown)
    }

    mutating func writeOrderEntries(_ entries: [OrderEntry]) {
        writeVarint(UInt64(entries.count))
        for e in entries {
            writeVarint(UInt64(e.origin))
            writeVarint(e.seq)
        }
    }

    mutating func writeStreamPosition(_ p: StreamPosition) {
        writeViewID(p.view)
        writeVarints(p.delivered)
    }

    mutating func writeDataMessage(_ m: DataMessage) {
        writeViewID(m.id.view)
        writeVarint(UInt64(m.id.origin))
        writeVarint(m.id.seq)
        writeProcessID(m.publish.origin)
        writeVarint(m.publish.seq)
        writeVarint(m.session)
        writeInteger(m.level.rawValue)
        switch m.kind {
        case .publish(.topic(let t)):
            writeInteger(UInt8(0))
            writeVarString(t.name)
        case .publish(.group(let p)):
            writeInteger(UInt8(1))
            writeVarString(p.name)
        case .groupJoin(let p):
            writeInteger(UInt8(2))
            writeVarString(p.name)
        case .groupLeave(let p):
            writeInteger(UInt8(3))
            writeVarString(p.name)
        case .groupReady(let p):
            writeInteger(UInt8(4))
            writeVarString(p.name)
        }
        writeVarBytes(m.payload)
    }

    mutating func writeInstall(_ i: Install) {
        writeOptional(i.previous) { $0.writeViewID($1) }
        writeClusterView(i.view)
        writeVarints(i.cut)
        writeVarint(i.ordersCut)
        writeArray(i.messages) { $0.writeDataMessage($1) }
        writeVarint(i.ordersFirst)
        writeOrderEntries(i.orders)
        writeArray(i.groups) { b, g in
            b.writeVarString(g.pattern.name)
            b.writeArray(g.members) { $0.writeProcessID($1) }
            b.writeArray(g.ready) { $0.writeInteger(UInt8($1 ? 1 : 0)) }
            b.writeVarint(g.view)
        }
        writeArray(i.readyAtCut) { b, m in
            b.writeVarString(m.pattern.name)
            b.writeProcessID(m.member)
        }

    }
}
