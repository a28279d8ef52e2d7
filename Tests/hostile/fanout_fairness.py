"""One big fan-out must not hold everyone else (issue 13). Prints one JSON object.

Usage: fanout_fairness.py PORT SUBSCRIBERS MESSAGES
Opens SUBSCRIBERS raw HTTP/1.1 subscriptions to `ff.>` that never read,
and one that reads on `ffother.t`. Publishes one batch of MESSAGES small
messages to `ff.*` (SUBSCRIBERS x MESSAGES queue entries) and, while it
runs, an unrelated single publish to `ffother.t` every 100 ms, timing
each answer and its delivery to the reading subscriber.
"""
import http.client, json, socket, sys, threading, time
port, subscribers, messages = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def subscribe(pattern):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/subscribe?topic=%s HTTP/1.1\r\nHost: x\r\n\r\n" % pattern.encode())
    return s

idle = [subscribe("ff.%3E") for _ in range(subscribers)]
other = subscribe("ffother.t")
other.settimeout(30)
buf = b""
while b"200 OK" not in buf: buf += other.recv(65536)
time.sleep(1)
seen = {}
def read_other():
    data = b""
    while True:
        try:
            chunk = other.recv(65536)
        except OSError:
            return
        if not chunk: return
        data += chunk
        now = time.time()
        while b'"data":"u' in data:
            i = data.index(b'"data":"u') + 8
            j = data.index(b'"', i) if b'"' in data[i:] else -1
            if j < 0: break
            seen.setdefault(data[i:j].decode(), now)
            data = data[j:]
threading.Thread(target=read_other, daemon=True).start()

body = "".join('{"topic":"ff.%d","data":"m%d"}\n' % (i % 10, i) for i in range(messages)).encode()
result = {}
def publish_batch():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.time()
    c.request("POST", "/v1/publish", body=body, headers={"Content-Type": "application/x-ndjson"})
    r = c.getresponse(); r.read()
    result["batch_status"] = r.status
    result["batch_seconds"] = round(time.time() - t0, 3)
batch = threading.Thread(target=publish_batch)
batch.start()
time.sleep(0.3)
answers, sent = [], {}
n = 0
while batch.is_alive():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    key = "u%d" % n
    t0 = time.time()
    c.request("POST", "/v1/topics/ffother.t", body=key.encode())
    r = c.getresponse(); r.read(); c.close()
    if batch.is_alive() or n == 0:
        answers.append(time.time() - t0)
        sent[key] = t0
    n += 1
    time.sleep(0.1)
batch.join()
time.sleep(1)
delivered = [seen[k] - t for k, t in sent.items() if k in seen]
result.update({
    "unrelated_publishes": len(answers),
    "unrelated_answer_max_seconds": round(max(answers), 3) if answers else None,
    "unrelated_delivered": len(delivered),
    "unrelated_delivery_max_seconds": round(max(delivered), 3) if delivered else None,
})
print(json.dumps(result))
