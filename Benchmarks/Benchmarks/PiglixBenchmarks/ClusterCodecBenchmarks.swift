import Benchmark
import NIOCore
import PiglixCluster
import PiglixGroups
import PiglixTopics

/// The cluster's codec (PiglixCluster's MessageCodec) on a batch of 1,000
/// publishes as data messages, each carrying 128 bytes of payload plus the
/// broker's payload header: what the publisher's node writes to each peer
/// for one batch, and what each peer reads.
func clusterCodecBenchmarks() {
    let messages = makeBatch()
    var encoded = ByteBuffer()
    for message in messages { MessageCodec.encode(message, into: &encoded) }

    Benchmark("cluster MessageCodec encode, batch of 1000 publishes") { benchmark in
        for _ in benchmark.scaledIterations {
            var out = ByteBuffer()
            out.reserveCapacity(encoded.readableBytes)
            for message in messages { MessageCodec.encode(message, into: &out) }
            blackHole(out)
        }
    }
    Benchmark("cluster MessageCodec decode, batch of 1000 publishes") { benchmark in
        for _ in benchmark.scaledIterations {
            var input = encoded
            while input.readableBytes > 0 {
                blackHole(try! MessageCodec.decode(&input))
            }
        }
    }
}

/// 1,000 `fifo` publishes to one topic from one origin, in one view.
private func makeBatch() -> [ProtocolMessage] {
    let coordinator = ProcessID(node: NodeID(1), incarnation: 1_764_000_000_000_000)
    let view = ViewID(epoch: 3, coordinator: coordinator)
    let topic = try! Topic("bench.cluster.topic")
    // The broker's cluster payload is a u16 header count, the headers, then
    // the payload bytes (ClusterPayload.encode): no headers here.
    let payload = [UInt8](repeating: 0, count: 2) + [UInt8](repeating: UInt8(ascii: "x"), count: 128)
    return (0..<UInt64(batchRecords)).map { seq in
        .data(
            DataMessage(
                id: MessageID(view: view, origin: 0, seq: seq + 1), publish: PublishID(origin: coordinator, seq: seq + 1), session: 7,
                level: .fifo, kind: .publish(.topic(topic)), payload: payload))
    }
}
