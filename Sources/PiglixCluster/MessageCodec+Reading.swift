import NIOCore
import PiglixGroups
import PiglixTopics

// MARK: - Reading

extension ByteBuffer {
    mutating func readVarint() throws(MessageDecodingError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte: UInt8 = readInteger() else { throw MessageDecodingError("truncated varint") }
            if shift == 63 && byte > 1 { throw MessageDecodingError("varint overflows 64 bits") }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw MessageDecodingError("varint too long") }
        }
    }

    /// A chunk index: a varint that fits 32 bits.
    mutating func readIndex() throws(MessageDecodingError) -> UInt32 {
        let n = try readVarint()
        guard let index = UInt32(exactly: n) else { throw MessageDecodingError("index \(n) does not fit 32 bits") }
        return index
    }

    /// The length of a byte string: bounded only by what is left of the
    /// frame (itself bounded by the frame limit), not by `countMax`.
    mutating func readByteCount() throws(MessageDecodingError) -> Int {
        let n = try readVarint()
        guard n <= UInt64(readableBytes) else { throw MessageDecodingError("byte string of \(n) bytes exceeds the \(readableBytes) bytes left") }
        return Int(n)
    }

    mutating func readCount() throws(MessageDecodingError) -> Int {
        let n = try readVarint()
        // Every item takes at least one byte: a count above what is left is corrupt.
        guard n <= UInt64(MessageCodec.countMax) else { throw MessageDecodingError("count \(n) is over the limit of \(MessageCodec.countMax) items") }
        guard n <= UInt64(readableBytes) else {
            throw MessageDecodingError("count \(n) exceeds the \(readableBytes) bytes left")
        }
        return Int(n)
    }

    mutating func readVarBytes() throws(MessageDecodingError) -> [UInt8] {
        let n = try readByteCount()
        guard let bytes = readBytes(length: n) else { throw MessageDecodingError("truncated bytes") }
        return bytes
    }

    mutating func readVarString() throws(MessageDecodingError) -> String {
        let n = try readByteCount()
        guard let s = readString(length: n) else { throw MessageDecodingError("truncated string") }
        return s
    }

    mutating func readVarints() throws(MessageDecodingError) -> [UInt64] {
        let n = try readCount()
        var out: [UInt64] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try readVarint()) }
        return out
    }

    mutating func readArray<T>(_ read: (inout ByteBuffer) throws(MessageDecodingError) -> T) throws(MessageDecodingError) -> [T] {
        let n = try readCount()
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try read(&self)) }
        return out
    }

    mutating func readOptional<T>(_ read: (inout ByteBuffer) throws(MessageDecodingError) -> T) throws(MessageDecodingError) -> T? {
        guard let flag: UInt8 = readInteger() else { throw MessageDecodingError("truncated optional") }
        switch flag {
        case 0: return nil
        case 1: return try read(&self)
        default: throw MessageDecodingError("bad optional flag \(flag)")
        }
    }

    mutating func readProcessID() throws(MessageDecodingError) -> ProcessID {
        ProcessID(node: NodeID(try readVarint()), incarnation: try readVarint())
    }

    mutating func readViewID() throws(MessageDecodingError) -> ViewID {
        ViewID(epoch: try readVarint(), coordinator: try readProcessID())
    }

    mutating func readClusterView() throws(MessageDecodingError) -> ClusterView {
        let id = try readViewID()
        let members = try readArray { b throws(MessageDecodingError) in try b.readProcessID() }
        guard !members.isEmpty else { throw MessageDecodingError("a view without members") }
        return ClusterView(id: id, members: members)
    }

    mutating func readDigest() throws(MessageDecodingError) -> Digest {
        Digest(received: try readVarints(), ordersKnown: try readVarint())
    }

    mutating func readOrderEntries() throws(MessageDecodingError) -> [OrderEntry] {
        let n = try readCount()
        var out: [OrderEntry] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let origin = try readVarint()
            guard origin <= UInt64(UInt32.max) else { throw MessageDecodingError("origin rank \(origin) out of range") }
            out.append(OrderEntry(origin: UInt32(origin), seq: try readVarint()))
        }
        return out
    }

    mutating func readStreamPosition() throws(MessageDecodingError) -> StreamPosition {
        StreamPosition(view: try readViewID(), delivered: try readVarints())
    }

    mutating func readPattern() throws(MessageDecodingError) -> TopicPattern {
        let name = try readVarString()
        do { return try TopicPattern(name, limits: MessageCodec.limits) } catch {
            throw MessageDecodingError("pattern \(name): \(error)")
        }
    }

    mutating func readTopic() throws(MessageDecodingError) -> Topic {
        let name = try readVarString()
        do { return try Topic(name, limits: MessageCodec.limits) } catch {
            throw MessageDecodingError("topic \(name): \(error)")
        }
    }

    mutating func readDataMessage() throws(MessageDecodingError) -> DataMessage {
        let view = try readViewID()
        let origin = try readVarint()
        guard origin <= UInt64(UInt32.max) else { throw MessageDecodingError("origin rank \(origin) out of range") }
        let seq = try readVarint()
        let publisher = try readProcessID()
        let publishSeq = try readVarint()
        let session = try readVarint()
        guard let rawLevel: UInt8 = readInteger(), let level = DeliveryLevel(rawValue: rawLevel) else {
            throw MessageDecodingError("bad delivery level")
        }
        guard let kindTag: UInt8 = readInteger() else { throw MessageDecodingError("truncated kind") }
        let kind: DataKind
        switch kindTag {
        case 0: kind = .publish(.topic(try readTopic()))
        case 1: kind = .publish(.group(try readPattern()))
        case 2: kind = .groupJoin(try readPattern())
        case 3: kind = .groupLeave(try readPattern())
        case 4: kind = .groupReady(try readPattern())
        default: throw MessageDecodingError("unknown data kind \(kindTag)")
        }
        let payload = try readVarBytes()
        return DataMessage(
            id: MessageID(view: view, origin: UInt32(origin), seq: seq), publish: PublishID(origin: publisher, seq: publishSeq),
            session: session, level: level, kind: kind, payload: payload)
    }

    mutating func readInstall() throws(MessageDecodingError) -> Install {
        let previous = try readOptional { b throws(MessageDecodingError) in try b.readViewID() }
        let view = try readClusterView()
        let cut = try readVarints()
        let ordersCut = try readVarint()
        let messages = try readArray { b throws(MessageDecodingError) in try b.readDataMessage() }
        let ordersFirst = try readVarint()
        let orders = try readOrderEntries()
        let groups = try readArray { b throws(MessageDecodingError) -> GroupRecord in
            let pattern = try b.readPattern()
            let members = try b.readArray { b throws(MessageDecodingError) in try b.readProcessID() }
            let ready = try b.readArray { b throws(MessageDecodingError) -> Bool in
                guard let flag: UInt8 = b.readInteger() else { throw MessageDecodingError("truncated flag") }
                return flag != 0
            }
            guard ready.count == members.count else { throw MessageDecodingError("group \(pattern.name): ready flags do not match members") }
            let groupView = try b.readVarint()
            return GroupRecord(pattern: pattern, members: members, ready: ready, view: groupView)
        }
        let readyAtCut = try readArray { b throws(MessageDecodingError) -> GroupMember in
            GroupMember(pattern: try b.readPattern(), member: try b.readProcessID())
        }
        return Install(
            previous: previous, view: view, cut: cut, ordersCut: ordersCut, messages: messages, ordersFirst: ordersFirst,
            orders: orders, groups: groups, readyAtCut: readyAtCut)
    }
}
