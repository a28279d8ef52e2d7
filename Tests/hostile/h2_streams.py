"""HTTP/2 client that opens one stream more than the server advertises (issue 13).

Opens as many subscriptions as the SETTINGS allow, waits until each is live,
then sends one more HEADERS past the limit, publishes one message and checks
who gets it. Prints one JSON object. Usage: h2_streams.py PORT
"""
import json, socket, sys, time
import h2.connection, h2.config, h2.events, h2.settings
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(0.2)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
s.sendall(conn.data_to_send())
out = {"advertised": None, "responses": [], "reset": {}, "goaway": None}
data = {}

def pump(until, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline and out["goaway"] is None and not until():
        try:
            chunk = s.recv(65536)
            if not chunk: break
        except socket.timeout:
            continue
        for e in conn.receive_data(chunk):
            if isinstance(e, h2.events.RemoteSettingsChanged):
                for code, setting in e.changed_settings.items():
                    if code == h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: out["advertised"] = setting.new_value
            elif isinstance(e, h2.events.ResponseReceived):
                out["responses"].append(e.stream_id)
            elif isinstance(e, h2.events.StreamReset):
                out["reset"][e.stream_id] = int(e.error_code)
            elif isinstance(e, h2.events.ConnectionTerminated):
                out["goaway"] = int(e.error_code)
            elif isinstance(e, h2.events.DataReceived):
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                data[e.stream_id] = data.get(e.stream_id, b"") + e.data
        pending = conn.data_to_send()
        if pending: s.sendall(pending)
    return until()

def subscribe():
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":path", "/v1/subscribe?topic=h2.many"), (":scheme", "http"), (":authority", "x")], end_stream=True)
    s.sendall(conn.data_to_send())
    return sid

def having(needle): return [k for k, v in data.items() if needle in v]

pump(lambda: out["advertised"] is not None)  # the server's SETTINGS, acked by h2
live = [subscribe() for _ in range(out["advertised"] or 100)]
out["live"] = pump(lambda: len(having(b'"type":"view"')) >= len(live))
# One more, past what the server advertised: h2 would refuse to send it.
conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
conn.remote_settings.acknowledge()
extra = subscribe()
pump(lambda: extra in out["reset"] or extra in out["responses"], 5)
out["extra"] = {"stream": extra, "reset": out["reset"].get(extra), "answered": extra in out["responses"]}
p = socket.create_connection(("127.0.0.1", port))
p.sendall(b"POST /v1/topics/h2.many HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
p.recv(4096); p.close()
pump(lambda: len(set(having(b'"type":"message"')) & set(live)) >= len(live))
out["received"] = len(set(having(b'"type":"message"')) & set(live))
if out["goaway"] is not None:
    out["responses"] = len(out["responses"]); out["reset"] = {str(k): v for k, v in out["reset"].items()}
    print(json.dumps(out)); sys.exit(0)
# A slot that frees up takes a new stream.
conn.reset_stream(live[0]); s.sendall(conn.data_to_send())
time.sleep(0.2)
again = subscribe()
pump(lambda: again in out["responses"] or again in out["reset"], 5)
out["after_close"] = {"answered": again in out["responses"], "reset": out["reset"].get(again)}
out["responses"] = len(out["responses"])
out["reset"] = {str(k): v for k, v in out["reset"].items()}
print(json.dumps(out))
