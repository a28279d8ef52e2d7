"""Many compressed subscriptions over HTTP/2 (issue 13). Prints one JSON object.

Usage: gzip_subscriptions.py PORT COUNT QUERY PID [ENCODING]
Opens COUNT subscriptions (100 streams per connection) with
`Accept-Encoding: ENCODING` (gzip) and QUERY appended to the URL, waits
for each one's answer, reads the server's VmRSS (process PID) with all of
them open and again 3 s after closing them.
"""
import json, socket, sys, time
import h2.connection, h2.config, h2.events
port, total, query, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
enc = sys.argv[5] if len(sys.argv) > 5 else "gzip"
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
out = {"rss_before_mib": rss()}
conns = []
statuses = {}
first = set()
for c in range((total + 99) // 100):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(0.05)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection(); s.sendall(conn.data_to_send())
    conns.append((s, conn))
def pump(seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for s, conn in conns:
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                continue
            if not chunk: continue
            for e in conn.receive_data(chunk):
                if isinstance(e, h2.events.ResponseReceived):
                    statuses[(id(conn), e.stream_id)] = dict(e.headers).get(":status")
                elif isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    first.add((id(conn), e.stream_id))
            d = conn.data_to_send()
            if d: s.sendall(d)
        if len(statuses) >= total and len([v for v in statuses.values() if v != "200"]) + len(first) >= total: return
pump(2)
n = 0
for s, conn in conns:
    for _ in range(100):
        if n >= total: break
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", f"/v1/subscribe?topic=gz.{n}{query}"), (":scheme", "http"), (":authority", "x"), ("accept-encoding", enc)], end_stream=True)
        n += 1
    s.sendall(conn.data_to_send())
pump(60)
codes = {}
for v in statuses.values(): codes[v] = codes.get(v, 0) + 1
out["statuses"] = codes
out["streams_with_data"] = len(first)
time.sleep(1)
out["rss_open_mib"] = rss()
for s, conn in conns:
    s.close()
time.sleep(3)
out["rss_after_close_mib"] = rss()
print(json.dumps(out))
