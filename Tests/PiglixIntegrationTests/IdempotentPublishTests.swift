import Foundation
import PiglixTestKit
import XCTest

/// Idempotent publish on real nodes (docs/patterns.md, "Idempotent
/// publish"): a retry on another node, and after the node that accepted
/// the original was SIGKILLed, is acked with the original id and never
/// delivered a second time.
final class IdempotentPublishTests: XCTestCase {
    /// One idempotent single publish with curl; retried while the node says
    /// 503 (its idempotence state still transferring, a view change).
    private func publish(_ node: ClusterMember, sequence: UInt64, data: String, producer: String = "billing-7") -> Curl.Result {
        var reply = Curl.request(["\(node.base)/healthz"])
        for _ in 0..<50 {
            reply = Curl.request([
                "--http2-prior-knowledge", "-H", "Piglix-Producer: \(producer)", "-H", "Piglix-Sequence: \(sequence)", "-d", data,
                "\(node.base)/v1/topics/idem.orders",
            ])
            guard reply.httpCode == 503 else { return reply }
            usleep(200_000)
        }
        return reply
    }

    func testRetryOnAnotherNodeAndAfterSIGKILLOfTheAcceptingNodeGetsTheOriginalIdAndIsDeliveredOnce() async throws {
        let cluster = try LocalCluster.loopback(3)
        try cluster.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let (n1, n2, n3) = (cluster.member("n1"), cluster.member("n2"), cluster.member("n3"))
        let subscriber = try CurlStream(http2: "\(n3.base)/v1/subscribe?topic=idem.>")
        try await subscriber.waitUntilLive()

        let first = publish(n1, sequence: 1, data: "order-1")
        XCTAssertEqual(first.httpCode, 202, first.text)
        let id = try XCTUnwrap(first.json["id"] as? String, first.text)
        XCTAssertEqual(first.json["delivery"] as? String, "total")

        let retry = publish(n2, sequence: 1, data: "order-1")
        XCTAssertEqual(retry.httpCode, 202, retry.text)
        XCTAssertEqual(retry.json["id"] as? String, id, "a retry on another node gets the original id")

        // The node that accepted the original dies; the survivors still know it.
        n1.kill()
        try await cluster.waitForView(["n2", "n3"], on: [n2, n3])
        for node in [n2, n3] {
            let again = publish(node, sequence: 1, data: "order-1")
            XCTAssertEqual(again.httpCode, 202, again.text)
            XCTAssertEqual(again.json["id"] as? String, id, "a retry on \(node.name) after the SIGKILL of n1")
        }
        let next = publish(n2, sequence: 2, data: "order-2")
        XCTAssertEqual(next.httpCode, 202, next.text)
        XCTAssertNotEqual(next.json["id"] as? String, id)

        try await subscriber.waitFor("order-2") { $0.payloads.contains("order-2") }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(subscriber.payloads, ["order-1", "order-2"], "each record delivered once")

        // A restarted n1 (a new incarnation) takes the table by state transfer.
        try n1.start()
        try await cluster.waitForView(["n1", "n2", "n3"], on: cluster.members)
        let afterRestart = publish(n1, sequence: 1, data: "order-1")
        XCTAssertEqual(afterRestart.httpCode, 202, afterRestart.text)
        XCTAssertEqual(afterRestart.json["id"] as? String, id, "the restarted node learnt the original by state transfer")
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(subscriber.payloads, ["order-1", "order-2"])
        let metrics = Curl.request(["\(n2.base)/metrics"]).text
        XCTAssertTrue(metrics.contains("piglix_idempotent_duplicates_total"), metrics)
    }
}
