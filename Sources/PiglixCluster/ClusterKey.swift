import Crypto
import Foundation
import NIOCore

/// The shared secret that admits a node to the cluster (like Corosync's
/// authkey), read from `--cluster-key-file`.
///
/// The file holds one key per line (blank lines and lines starting with `#`
/// are ignored); each key is at least 16 bytes of text, e.g. the output of
/// `openssl rand -base64 32`. The first key is the one this node proves
/// itself with; every key in the file is accepted from a peer. That makes a
/// rotation possible without downtime (docs/operations.md, "Cluster key").
///
/// Two nodes admit each other by a mutual challenge–response over the two
/// hellos (each carries a fresh 32-byte nonce): each proves knowledge of a
/// key with HMAC-SHA256 over both hellos and its role, and every later frame
/// on the link is sealed with ChaCha20-Poly1305 under a key derived (HKDF)
/// from that key and both nonces, one per direction, with a counter as the
/// nonce: a frame cannot be forged, replayed, reordered or read.
public struct ClusterKey: Sendable {
    /// The keys' bytes, the proving one first. (Crypto's `SymmetricKey` is
    /// not Sendable; one is made from these bytes where a key is used.)
    let keys: [[UInt8]]

    public enum Invalid: Error, Equatable, CustomStringConvertible {
        case empty
        case tooShort(line: Int, bytes: Int)
        case tooMany(Int)
        public var description: String {
            switch self {
            case .empty: "the cluster key file holds no key (one key per line, at least 16 bytes each)"
            case .tooShort(let line, let bytes): "the cluster key on line \(line) is \(bytes) bytes; use at least 16 (e.g. openssl rand -base64 32)"
            case .tooMany(let count): "the cluster key file holds \(count) keys; at most 4 (the current one first, then older ones during a rotation)"
            }
        }
    }

    /// Shortest key accepted, in bytes of text.
    public static let bytesMin = 16
    /// Most keys in one file: a proof is checked against each.
    public static let keysMax = 4

    /// Parses the contents of a key file.
    public init(fileContents text: String) throws(Invalid) {
        var keys: [[UInt8]] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard line.utf8.count >= Self.bytesMin else { throw .tooShort(line: index + 1, bytes: line.utf8.count) }
            keys.append(Array(line.utf8))
        }
        if keys.isEmpty { throw .empty }
        if keys.count > Self.keysMax { throw .tooMany(keys.count) }
        self.keys = keys
    }

    /// The role of one end of a link in the handshake: the proofs and the
    /// keys of the two directions differ by it, so one end's proof or frame
    /// cannot be reflected back as the other's.
    enum Role: UInt8 {
        case dialer = 1
        case acceptor = 2
        var other: Role { self == .dialer ? .acceptor : .dialer }
    }

    /// What a proof covers: both hellos, dialer's first, and the prover's role.
    static func transcript(dialerHello: ByteBuffer, acceptorHello: ByteBuffer, prover: Role) -> [UInt8] {
        var bytes = Array("piglix cluster auth v1".utf8)
        bytes.append(prover.rawValue)
        for hello in [dialerHello, acceptorHello] {
            let count = UInt32(hello.readableBytes)
            bytes.append(contentsOf: [UInt8(count >> 24), UInt8(truncatingIfNeeded: count >> 16), UInt8(truncatingIfNeeded: count >> 8), UInt8(truncatingIfNeeded: count)])
            bytes.append(contentsOf: hello.readableBytesView)
        }
        return bytes
    }

    /// This node's proof (32 bytes), with its first key.
    func prove(_ transcript: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: transcript, using: SymmetricKey(data: keys[0])))
    }

    /// The key whose proof `proof` is, or nil; compared in constant time.
    func verify(_ proof: ByteBuffer, transcript: [UInt8]) -> [UInt8]? {
        let code = Array(proof.readableBytesView)
        return keys.first { HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: transcript, using: SymmetricKey(data: $0)) }
    }

    /// The sealing key of one direction of a link: from the key its sender
    /// proved itself with, both nonces and the sender's role.
    static func linkKey(_ key: [UInt8], dialerNonce: [UInt8], acceptorNonce: [UInt8], sender: Role) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: key), salt: dialerNonce + acceptorNonce,
            info: Array("piglix link v1".utf8) + [sender.rawValue], outputByteCount: 32)
    }
}

/// One direction of an authenticated link: seals or opens frames in order,
/// with the frame's number as the ChaCha20-Poly1305 nonce.
struct LinkCipher {
    let key: SymmetricKey
    private var counter: UInt64 = 0

    init(key: SymmetricKey) { self.key = key }

    struct Refused: Error, CustomStringConvertible {
        var description: String { "a frame failed authentication (wrong key, tampered, replayed or reordered)" }
    }

    private mutating func nextNonce() throws -> ChaChaPoly.Nonce {
        counter += 1
        var bytes = [UInt8](repeating: 0, count: 12)
        var n = counter
        for i in (4..<12).reversed() {
            bytes[i] = UInt8(truncatingIfNeeded: n)
            n >>= 8
        }
        return try ChaChaPoly.Nonce(data: bytes)
    }

    /// Seals `kind` and `body` (the inner frame) into the body of a `sealed` frame.
    mutating func seal(kind: PeerFrameKind, body: ByteBuffer, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var plain = [UInt8]()
        plain.reserveCapacity(body.readableBytes + 1)
        plain.append(kind.rawValue)
        plain.append(contentsOf: body.readableBytesView)
        let box = try ChaChaPoly.seal(plain, using: key, nonce: nextNonce())
        var out = allocator.buffer(capacity: plain.count + 16)
        out.writeBytes(box.ciphertext)
        out.writeBytes(box.tag)
        return out
    }

    /// Opens the body of a `sealed` frame: the inner frame's kind and body.
    mutating func open(_ sealed: ByteBuffer) throws -> (PeerFrameKind, ByteBuffer) {
        guard sealed.readableBytes >= 17 else { throw Refused() }
        let bytes = sealed.readableBytesView
        let split = bytes.index(bytes.endIndex, offsetBy: -16)
        let box = try ChaChaPoly.SealedBox(nonce: nextNonce(), ciphertext: Array(bytes[..<split]), tag: Array(bytes[split...]))
        let plain: Data
        do { plain = try ChaChaPoly.open(box, using: key) } catch { throw Refused() }
        guard let first = plain.first, let kind = PeerFrameKind(rawValue: first), [.messages, .compressedMessages, .fragment].contains(kind) else {
            throw Refused()
        }
        var body = ByteBuffer()
        body.writeBytes(plain.dropFirst())
        return (kind, body)
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}
