"""Clients that hold connections (issue 13). Prints one JSON object.

  connections.py slowloris PORT SECONDS   partial HTTP/1.1 head, one header line every 200 ms
  connections.py idle PORT SECONDS        one request each on HTTP/2 and HTTP/1.1, then silence
  connections.py per-address PORT N       N+1 connections from one address, then a request on each
"""
import json, socket, sys, time


def closed(sock, wait):
    """Whether the peer closed `sock` within `wait` seconds."""
    deadline = time.time() + wait
    try:
        while time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            if sock.recv(65536) == b"":
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return False


def get(sock, path="/healthz"):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def slowloris(port, seconds):
    s = socket.create_connection(("127.0.0.1", port))
    start = time.time()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    while time.time() - start < seconds:
        try:
            s.sendall(b"X-Drip: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return {"closed_after": round(time.time() - start, 2)}
        if closed(s, 0.2):
            return {"closed_after": round(time.time() - start, 2)}
    return {"closed_after": None}


def idle(port, seconds):
    import h2.config, h2.connection, h2.events
    out = {"h2_status": None, "goaway": None, "h2_closed_after": None, "h1_status": None, "h1_closed_after": None}
    s = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "x")], end_stream=True)
    s.sendall(conn.data_to_send())
    h1 = socket.create_connection(("127.0.0.1", port))
    out["h1_status"] = get(h1)
    start = time.time()
    s.settimeout(0.1)
    while time.time() - start < seconds and out["h2_closed_after"] is None:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            out["h2_closed_after"] = round(time.time() - start, 2)
            break
        for e in conn.receive_data(chunk):
            if isinstance(e, h2.events.ResponseReceived):
                out["h2_status"] = dict(e.headers).get(":status")
                start = time.time()  # idle from the answer on
            elif isinstance(e, h2.events.ConnectionTerminated):
                out["goaway"] = int(e.error_code)
        pending = conn.data_to_send()
        if pending:
            s.sendall(pending)
    left = max(0.1, seconds - (time.time() - start))
    h1_start = time.time()
    if closed(h1, left):
        out["h1_closed_after"] = round(time.time() - h1_start + (h1_start - start), 2)
    return out


def per_address(port, n):
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(n + 1)]
    time.sleep(0.3)  # the server has accepted (or refused) each by now

    def answer(s):
        try:
            return get(s)
        except OSError:
            return ""

    answers = [answer(s) for s in sockets]
    for s in sockets:
        s.close()
    time.sleep(0.3)
    again = socket.create_connection(("127.0.0.1", port))
    after = answer(again)
    again.close()
    return {"answers": answers, "after_closing": after}


mode, port = sys.argv[1], int(sys.argv[2])
if mode == "slowloris":
    print(json.dumps(slowloris(port, float(sys.argv[3]))))
elif mode == "idle":
    print(json.dumps(idle(port, float(sys.argv[3]))))
elif mode == "per-address":
    print(json.dumps(per_address(port, int(sys.argv[3]))))
