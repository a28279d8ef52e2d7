extension GroupNode {
    /// Step 3 of the flush (Flush.swift): the cut every survivor delivers
    /// to, from the survivors' reports.
    static func computeInstall(_ flush: CoordinatorFlush, view: ClusterView) -> Install {
        let n = view.members.count
        let reports = flush.survivors.map { flush.reports[$0]! }
        // Per origin rank, over the reports.
        var maxReceived = [UInt64](repeating: 0, count: n)
        var minReceived = [UInt64](repeating: .max, count: n)
        var maxDelivered = [UInt64](repeating: 0, count: n)
        var minFloor = [UInt64](repeating: .max, count: n)
        var knownStable = [UInt64](repeating: 0, count: n)
        var held = [[UInt64: DataMessage]](repeating: [:], count: n)
        // The total order, by index and index by entry.
        var entries: [UInt64: OrderEntry] = [:]
        var entryIndex: [OrderEntry: UInt64] = [:]
        var maxOrders: UInt64 = 0
        var minOrders: UInt64 = .max
        var minOrdersFloor: UInt64 = .max
        var maxTotalDelivered: UInt64 = 0
        for report in reports {
            for origin in 0..<n {
                maxReceived[origin] = max(maxReceived[origin], report.digest.received[origin])
                minReceived[origin] = min(minReceived[origin], report.digest.received[origin])
                maxDelivered[origin] = max(maxDelivered[origin], report.delivered[origin])
                minFloor[origin] = min(minFloor[origin], report.floors[origin])
                knownStable[origin] = max(knownStable[origin], report.knownStable.received[origin])
            }
            for m in report.messages { held[Int(m.id.origin)][m.id.seq] = m }
            for (i, entry) in report.orders.enumerated() {
                let index = report.ordersFirst + UInt64(i)
                entries[index] = entry
                entryIndex[entry] = index
            }
            maxOrders = max(maxOrders, report.digest.ordersKnown)
            minOrders = min(minOrders, report.digest.ordersKnown)
            minOrdersFloor = min(minOrdersFloor, report.ordersFirst - 1)
            maxTotalDelivered = max(maxTotalDelivered, report.totalDelivered)
        }
        // A `safe` message every survivor holds is stable when the only
        // member of the view that did not report is its origin (which holds
        // its own messages): the coordinator may have delivered and acked
        // it on the acks it alone received before it was excluded, and no
        // one would send it again (FailoverTests, docs/patterns.md).
        let silent = view.members.indices.filter { !flush.survivors.contains(view.members[$0]) }
        if silent.count == 1, let origin = silent.first, minReceived[origin] != .max {
            knownStable[origin] = max(knownStable[origin], minReceived[origin])
        }
        // Shorten the longest received prefixes until every message in the
        // cut may be delivered and every order entry in it is in the cut.
        var cut = maxReceived
        var ordersCut = maxOrders
        var changed = true
        while changed {
            changed = false
            var index = minOrdersFloor + 1
            while index <= ordersCut {
                guard let entry = entries[index], entry.seq <= cut[Int(entry.origin)] else {
                    ordersCut = index - 1
                    changed = true
                    break
                }
                index += 1
            }
            for origin in 0..<n {
                var seq = minFloor[origin] + 1
                while seq <= cut[origin] {
                    guard let m = held[origin][seq] else {
                        cut[origin] = seq - 1
                        changed = true
                        break
                    }
                    if m.level.isTotallyOrdered && seq > maxDelivered[origin] {
                        var ok = false
                        if let index = entryIndex[OrderEntry(origin: UInt32(origin), seq: seq)], index <= ordersCut { ok = true }
                        if m.level.needsStability && seq > knownStable[origin] { ok = false }
                        if !ok {
                            cut[origin] = seq - 1
                            changed = true
                            break
                        }
                    }
                    seq += 1
                }
            }
        }
        for origin in 0..<n where cut[origin] < maxDelivered[origin] {
            let detail = flush.survivors.map { p in
                let report = flush.reports[p]!
                return "\(p): recv \(report.digest.received) del \(report.delivered) floors \(report.floors) orders \(report.ordersFirst)+\(report.orders.count)/\(report.digest.ordersKnown) tdel \(report.totalDelivered) stable \(report.knownStable.received) msgs \(report.messages.map { "\($0.id.origin).\($0.id.seq)\($0.level)" })"
            }.joined(separator: "\n")
            preconditionFailure("flush cut \(cut) below a delivery \(maxDelivered) in \(view) cutStable \(knownStable) ordersCut \(ordersCut)\n\(detail)")
        }
        precondition(ordersCut >= maxTotalDelivered, "flush orders cut \(ordersCut) below \(maxTotalDelivered) in \(view)")
        // What the survivor with the least needs, up to the cut.
        var messages: [DataMessage] = []
        for origin in 0..<n {
            var seq = minReceived[origin] + 1
            while seq <= cut[origin] {
                messages.append(held[origin][seq]!)
                seq += 1
            }
        }
        var orders: [OrderEntry] = []
        var index = minOrders + 1
        while index <= ordersCut {
            orders.append(entries[index]!)
            index += 1
        }
        var readyAtCut: [GroupMember] = []
        for p in flush.survivors {
            for pattern in flush.reports[p]!.activeGroups { readyAtCut.append(GroupMember(pattern: pattern, member: p)) }
        }
        return Install(
            previous: view.id, view: flush.proposal, cut: cut, ordersCut: ordersCut, messages: messages,
            ordersFirst: minOrders + 1, orders: orders, groups: [], readyAtCut: readyAtCut)
    }
}
