import NIOCore

/// Framing between nodes: `length: u32` big-endian (of what follows), then
/// `kind: u8`, then the body. One TCP connection carries a stream of frames.
public enum PeerFrameKind: UInt8, Sendable {
    /// First frame each side sends: who it is (`Hello`).
    case hello = 1
    /// Protocol messages, as encoded by the layer above.
    case messages = 2
    /// `messages`, zlib-compressed (deflate, one block per frame).
    case compressedMessages = 3
    /// With a cluster key: the sender's proof (HMAC-SHA256, 32 bytes),
    /// second frame each side sends (ClusterKey.swift).
    case proof = 4
    /// With a cluster key: every later frame, its kind and body sealed
    /// (ChaCha20-Poly1305, 16-byte tag at the end).
    case sealed = 5
    /// The front part of a `messages` body too large for one frame (a
    /// flush report holding many messages): the receiver gathers fragments,
    /// up to its message limit, until the `messages` frame that ends them.
    case fragment = 6
}

public struct PeerFrame: Sendable {
    public var kind: PeerFrameKind
    public var body: ByteBuffer
}

public enum PeerFrameError: Error, Sendable, Equatable, CustomStringConvertible {
    case tooLarge(Int, max: Int)
    case unknownKind(UInt8)
    case malformedHello(String)

    public var description: String {
        switch self {
        case .tooLarge(let length, let max): return "peer frame of \(length) bytes over the limit of \(max)"
        case .unknownKind(let kind): return "unknown peer frame kind \(kind)"
        case .malformedHello(let reason): return "malformed hello: \(reason)"
        }
    }
}

/// Cuts the byte stream from a peer into frames; the length is checked
/// against `frameBytesMax` before anything is buffered.
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerFrame
    let frameBytesMax: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try PeerFrame.read(from: &buffer, frameBytesMax: frameBytesMax) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

extension PeerFrame {
    /// Cuts one whole frame from the front of `buffer`, nil (consuming
    /// nothing) when more bytes are needed. What `PeerFrameDecoder` does on
    /// a connection; public so the fuzz targets (Fuzz/) can drive it.
    public static func read(from buffer: inout ByteBuffer, frameBytesMax: Int) throws(PeerFrameError) -> PeerFrame? {
        guard let length: UInt32 = buffer.getInteger(at: buffer.readerIndex) else { return nil }
        let size = Int(length)
        guard size >= 1 else { throw .tooLarge(0, max: frameBytesMax) }
        guard size <= frameBytesMax else { throw .tooLarge(size, max: frameBytesMax) }
        guard buffer.readableBytes >= 4 + size else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let rawKind: UInt8 = buffer.readInteger()!
        guard let kind = PeerFrameKind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
        return PeerFrame(kind: kind, body: buffer.readSlice(length: size - 1)!)
    }
}

extension ByteBuffer {
    /// Appends a whole frame.
    mutating func writePeerFrame(_ kind: PeerFrameKind, body: ByteBuffer) {
        writeInteger(UInt32(body.readableBytes + 1))
        writeInteger(kind.rawValue)
        var body = body
        writeBuffer(&body)
    }
}

/// Who a peer is: sent once, first, in each direction.
public struct Hello: Sendable, Hashable {
    /// Protocol version of the peer framing and messages. Version 2 added
    /// the nonce and the cluster-key flag; version 3 chunked checkpoints.
    public static let version: UInt16 = 3
    /// Bytes of the handshake nonce.
    static let nonceBytes = 32
    /// The node's stable name (`--node-id`).
    public var name: String
    /// This run of the node.
    public var incarnation: UInt64
    /// Where the node accepts peer connections (`--cluster-listen`), so
    /// others can dial it back after learning of it.
    public var listenAddress: String
    /// Whether the sender requires a cluster key: both ends must agree.
    public var keyed: Bool
    /// Fresh for each connection: what the proofs and link keys are bound to.
    public var nonce: [UInt8]

    public init(name: String, incarnation: UInt64, listenAddress: String, keyed: Bool = false, nonce: [UInt8] = []) {
        self.name = name
        self.incarnation = incarnation
        self.listenAddress = listenAddress
        self.keyed = keyed
        self.nonce = nonce
    }

    /// This hello for one new connection, with a fresh nonce.
    func forConnection() -> Hello {
        var hello = self
        var generator = SystemRandomNumberGenerator()
        hello.nonce = (0..<Self.nonceBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return hello
    }

    /// The body of a `hello` frame.
    public func encode() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Self.version)
        buffer.writeInteger(UInt16(name.utf8.count))
        buffer.writeString(name)
        buffer.writeInteger(incarnation)
        buffer.writeInteger(UInt16(listenAddress.utf8.count))
        buffer.writeString(listenAddress)
        buffer.writeInteger(UInt8(keyed ? 1 : 0))
        buffer.writeInteger(UInt8(nonce.count))
        buffer.writeBytes(nonce)
        return buffer
    }

    /// Parses the body of a `hello` frame.
    public static func decode(_ body: ByteBuffer) throws(PeerFrameError) -> Hello {
        var body = body
        guard let version: UInt16 = body.readInteger() else { throw .malformedHello("short") }
        guard version == Self.version else { throw .malformedHello("peer speaks version \(version), we speak \(Self.version)") }
        guard let nameLength: UInt16 = body.readInteger(), let name = body.readString(length: Int(nameLength)),
            let incarnation: UInt64 = body.readInteger(), let addressLength: UInt16 = body.readInteger(),
            let address = body.readString(length: Int(addressLength)), let keyed: UInt8 = body.readInteger(),
            let nonceLength: UInt8 = body.readInteger(), let nonce = body.readBytes(length: Int(nonceLength))
        else { throw .malformedHello("short") }
        guard !name.isEmpty else { throw .malformedHello("empty node name") }
        guard keyed <= 1, nonce.count == nonceBytes else { throw .malformedHello("bad key flag or nonce") }
        guard body.readableBytes == 0 else { throw .malformedHello("\(body.readableBytes) bytes after the hello") }
        return Hello(name: name, incarnation: incarnation, listenAddress: address, keyed: keyed == 1, nonce: nonce)
    }
}
