import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The PEM files of `--tls-cert` and `--tls-key`.
public struct TLSFiles: Sendable, Hashable {
    public var certificatePath: String
    public var keyPath: String
    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// The server TLS configuration of the files as they are now; the
    /// errors name the file.
    func configuration() throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificatePath) } catch {
            throw ServerSettings.Invalid(description: "--tls-cert \(certificatePath) is not a readable PEM certificate chain: \(error)")
        }
        guard !chain.isEmpty else { throw ServerSettings.Invalid(description: "--tls-cert \(certificatePath) holds no certificate") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
            throw ServerSettings.Invalid(description: "--tls-key \(keyPath) is not a readable PEM private key: \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }
}

/// The server's TLS context, replaced whole on reload (`SIGHUP`): new
/// connections get the new certificate, open ones keep theirs.
public final class TLSContextStore: Sendable {
    let files: TLSFiles
    private let context: NIOLockedValueBox<NIOSSLContext>

    init(files: TLSFiles) throws {
        self.files = files
        self.context = NIOLockedValueBox(try Self.makeContext(files))
    }

    static func makeContext(_ files: TLSFiles) throws -> NIOSSLContext {
        var configuration = try files.configuration()
        configuration.applicationProtocols = ["h2", "http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }

    var current: NIOSSLContext { context.withLockedValue { $0 } }

    /// Reads the files again; on an error the old certificate stays.
    func reload() throws {
        let fresh = try Self.makeContext(files)
        context.withLockedValue { $0 = fresh }
    }
}

/// Where the server keeps its TLS store once the listener built it, so a
/// `SIGHUP` can reach it.
final class TLSReloadHook: Sendable {
    private let store = NIOLockedValueBox<TLSContextStore?>(nil)
    func register(_ s: TLSContextStore) { store.withLockedValue { $0 = s } }
    func reload() throws { try store.withLockedValue { $0 }?.reload() }
}
