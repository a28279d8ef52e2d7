import HummingbirdCore
import HummingbirdHTTP2
import Logging
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

/// TLS on the node's port, with ALPN choosing `h2` or `http/1.1`
/// (Hummingbird's `HTTP2UpgradeChannel`), and a certificate that can be
/// replaced while the node runs (`SIGHUP`): new connections get the new
/// one, open connections keep theirs.
struct ReloadableTLSChannel: HTTPChannelHandler {
    typealias Value = HTTP2UpgradeChannel.Value
    let store: TLSChannelStore

    var responder: Responder { store.current.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        store.current.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await store.current.handle(value: value, logger: logger)
    }
}

/// The TLS channel in use, replaced whole on reload.
final class TLSChannelStore: Sendable {
    let files: TLSFiles
    let configuration: HTTP2ChannelConfiguration
    let responder: HTTPChannelHandler.Responder
    private let channel: NIOLockedValueBox<HTTP2UpgradeChannel>

    init(files: TLSFiles, configuration: HTTP2ChannelConfiguration, responder: @escaping HTTPChannelHandler.Responder) throws {
        self.files = files
        self.configuration = configuration
        self.responder = responder
        self.channel = NIOLockedValueBox(
            try HTTP2UpgradeChannel(tlsConfiguration: files.configuration(), configuration: configuration, responder: responder))
    }

    var current: HTTP2UpgradeChannel { channel.withLockedValue { $0 } }

    /// Reads the files again; on an error the old certificate stays.
    func reload() throws {
        let fresh = try HTTP2UpgradeChannel(tlsConfiguration: files.configuration(), configuration: configuration, responder: responder)
        channel.withLockedValue { $0 = fresh }
    }
}

/// Where the server keeps its TLS store once the listener built it, so a
/// `SIGHUP` can reach it.
final class TLSReloadHook: Sendable {
    private let store = NIOLockedValueBox<TLSChannelStore?>(nil)
    func register(_ s: TLSChannelStore) { store.withLockedValue { $0 = s } }
    func reload() throws { try store.withLockedValue { $0 }?.reload() }
}
