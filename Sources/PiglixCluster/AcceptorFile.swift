import Foundation
import NIOCore
import PiglixGroups

/// The node's flush votes on disk (`--data-dir`, StandIn.swift in the
/// core): written whole to a temporary file, synced, then renamed over the
/// old one, so a crash leaves the old state or the new, never a torn one.
/// The core's effects wait for the write: it happens at view changes only.
public struct AcceptorFile: Sendable {
    public let path: String
    static let magic: UInt32 = 0x5047_4146  // "PGAF"

    public init(directory: String, nodeName: String) {
        self.path = (directory as NSString).appendingPathComponent("\(nodeName).acceptor")
    }

    /// The state a previous run left, nil when there is none; a file that
    /// does not decode is an error (the caller decides to go on without).
    public func read() throws -> AcceptorState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var b = ByteBuffer(bytes: data)
        guard b.readInteger(as: UInt32.self) == Self.magic else { throw MessageDecodingError("\(path) is not a Piglix acceptor file") }
        do {
            let installed = try b.readClusterView()
            let promised = try b.readOptional { b throws(MessageDecodingError) in try b.readViewID() }
            let accepted = try b.readOptional { b throws(MessageDecodingError) in try b.readInstall() }
            let acceptedBallot = try b.readOptional { b throws(MessageDecodingError) in try b.readViewID() }
            return AcceptorState(installed: installed, promised: promised, accepted: accepted, acceptedBallot: acceptedBallot)
        } catch {
            throw MessageDecodingError("\(path) is truncated or corrupt: \(error)")
        }
    }

    public func remove() {
        unlink(path)
    }

    public func write(_ state: AcceptorState) throws {
        var b = ByteBuffer()
        b.writeInteger(Self.magic)
        b.writeClusterView(state.installed)
        b.writeOptional(state.promised) { $0.writeViewID($1) }
        b.writeOptional(state.accepted) { $0.writeInstall($1) }
        b.writeOptional(state.acceptedBallot) { $0.writeViewID($1) }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        try b.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                offset += n
            }
        }
        guard fsync(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
