import HTTPTypes
import Hummingbird
import NIOCore
import PiglixAuth
import PiglixBroker
import PiglixWire
import Synchronization

/// `POST /v1/locks/{name}` (a stream of `waiting`, `granted`, then `released`
/// or `lost`), `DELETE /v1/locks/{name}?token=N`, `GET /v1/locks`
/// (docs/protocol.md, "Locks"; docs/patterns.md, "Locks").
struct LockRoutes: Sendable {
    let broker: Broker
    let settings: ServerSettings
    /// Open lock streams per connection (`streamsPerConnectionMax`).
    let perConnection = LockStreamCounter()

    func request(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        do { try broker.checkLockName(name) } catch { throw Self.problem(error) }
        try context.access?.checkLock(name)
        let format = try RequestParsing.streamFormat(request)
        let connection = ObjectIdentifier(context.channel.parent ?? context.channel)
        let max = settings.broker.locks.streamsPerConnectionMax
        guard let slot = perConnection.reserve(connection, max: max) else {
            throw Problem(
                .tooManyRequests, "this connection has \(max) open lock streams (the per-connection bound); close one or use another connection",
                headers: [.retryAfter: "1"])
        }
        let handle: LockHandle
        do { handle = try await broker.requestLock(name) } catch {
            slot.release()
            throw Self.problem(error)
        }
        let expiry = context.access?.secondsUntilExpiry.map { seconds in
            Task {
                try await Task.sleep(for: .milliseconds(Int64(Swift.max(seconds, 0) * 1000)))
                handle.end(reason: "the token expired; request the lock again with a fresh token")
            }
        }
        // A client that resets the stream or drops the connection releases.
        context.channel.closeFuture.whenComplete { _ in
            expiry?.cancel()
            handle.close()
            slot.release()
        }
        let headers: HTTPFields = [
            .contentType: format == .sse ? "text/event-stream; charset=utf-8" : format.contentType,
            .cacheControl: "no-cache",
            .xAccelBuffering: "no",
            .vary: "Accept",
        ]
        let heartbeatInterval = settings.heartbeatInterval
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                let heartbeat = Task {
                    while !Task.isCancelled {
                        try await Task.sleep(for: heartbeatInterval)
                        handle.heartbeat()
                    }
                }
                defer {
                    heartbeat.cancel()
                    expiry?.cancel()
                    handle.close()
                    slot.release()
                }
                var out = ByteBuffer()
                for await record in handle.records {
                    RecordEncoder.writeLock(record, format: format, into: &out)
                    try await writer.write(out)
                    out = ByteBuffer()
                    if record.isFinal { break }
                }
                try await writer.finish(nil)
            })
    }

    func release(_ request: Request, context: PiglixRequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        do { try broker.checkLockName(name) } catch { throw Self.problem(error) }
        try context.access?.checkLock(name)
        guard let text = request.uri.queryParameters.get("token") else {
            throw Problem(.badRequest, "give the holder's fencing token: DELETE /v1/locks/\(name)?token=N")
        }
        guard let token = UInt64(text), token > 0 else {
            throw Problem(.badRequest, "token \(text) is not a fencing token (a positive decimal integer)")
        }
        do { try await broker.releaseLock(name, token: token) } catch { throw Self.problem(error) }
        return Response(status: .noContent)
    }

    func list(_ request: Request, context: PiglixRequestContext) -> Response {
        let table = broker.lockTable()
        var body = ByteBuffer()
        body.writeStaticString("{\"ready\":")
        body.writeString(table.ready ? "true" : "false")
        body.writeStaticString(",\"next_token\":")
        body.writeDecimal(table.nextToken)
        body.writeStaticString(",\"locks\":[")
        func write(_ e: LockInfo.Entry) {
            body.writeStaticString("{\"node\":")
            body.writeJSONString(e.node)
            body.writeStaticString(",\"process\":")
            body.writeJSONString(e.process)
            body.writeStaticString(",\"request\":")
            body.writeDecimal(e.request)
        }
        for (i, lock) in table.locks.enumerated() {
            if i > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeStaticString("{\"name\":")
            body.writeJSONString(lock.name)
            body.writeStaticString(",\"holder\":")
            if let holder = lock.holder {
                write(holder)
                body.writeStaticString(",\"token\":")
                body.writeDecimal(lock.token)
                body.writeInteger(UInt8(ascii: "}"))
            } else {
                body.writeStaticString("null")
            }
            body.writeStaticString(",\"queue\":[")
            for (k, waiter) in lock.queue.enumerated() {
                if k > 0 { body.writeInteger(UInt8(ascii: ",")) }
                write(waiter)
                body.writeStaticString(",\"position\":")
                body.writeDecimal(UInt64(k + 1))
                body.writeInteger(UInt8(ascii: "}"))
            }
            body.writeStaticString("]}")
        }
        body.writeStaticString("]}\n")
        return Response(
            status: .ok, headers: [.contentType: "application/json", .contentLength: String(body.readableBytes)],
            body: .init(byteBuffer: body))
    }

    static func problem(_ error: LockError) -> Problem {
        var headers: HTTPFields = [:]
        if error.status == 429 || error.status == 503 { headers[.retryAfter] = "1" }
        return Problem(Problem.status(error.status), error.description, headers: headers)
    }
}

/// Open lock streams per HTTP connection.
final class LockStreamCounter: Sendable {
    private let counts = Mutex<[ObjectIdentifier: Int]>([:])

    /// A slot, or nil past `max`.
    func reserve(_ connection: ObjectIdentifier, max: Int) -> Slot? {
        counts.withLock { counts in
            let n = counts[connection, default: 0]
            guard n < max else { return nil }
            counts[connection] = n + 1
            return Slot(counter: self, connection: connection)
        }
    }

    /// One reservation, released once however often `release` is called.
    final class Slot: Sendable {
        let counter: LockStreamCounter
        let connection: ObjectIdentifier
        let released = Mutex(false)
        init(counter: LockStreamCounter, connection: ObjectIdentifier) {
            self.counter = counter
            self.connection = connection
        }
        func release() {
            let first = released.withLock { done in
                defer { done = true }
                return !done
            }
            if first { counter.release(connection) }
        }
    }

    private func release(_ connection: ObjectIdentifier) {
        counts.withLock { counts in
            guard let n = counts[connection] else { return }
            counts[connection] = n > 1 ? n - 1 : nil
        }
    }
}

extension Access {
    /// 403 unless the token's `locks` claim grants `name`.
    func checkLock(_ name: String) throws {
        if !mayLock(name) {
            throw AuthMiddleware.problem(.forbidden("the token does not grant lock \(name) (its piglix.locks patterns do not match it)"))
        }
    }
}
