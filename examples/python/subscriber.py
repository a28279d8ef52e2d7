#!/usr/bin/env python3
"""Stream messages from a Piglix node over HTTP/2 with httpx, no Piglix library.

    python3 subscriber.py 'sensors.*.temp' 'logs.>'
    python3 subscriber.py --last-event-id 5f3a09c1-17 'sensors.>'   # resume after an id
    python3 subscriber.py --last-event-id earliest --count 10 'sensors.>'

Reads ``GET /v1/subscribe`` as NDJSON, one record per line, and prints
``<id> <topic> <data>`` per message and ``# ...`` for control records (view,
gap, heartbeat, end). If the connection drops or the node ends the stream, it
reconnects with backoff and resumes after the last id it printed
(``Last-Event-ID``), so nothing the node retains is lost or repeated.
With ``--count N`` it stops after N messages and prints ``# last-id <id>``.
Node: ``--url`` or ``$PIGLIX_URL`` (default http://127.0.0.1:8080); several
nodes of one cluster separated by commas: after a failure (or a 503 from a
node outside the primary component) it resumes on the next one, after the
last id it printed (a cluster id is valid on every node).
"""
import argparse
import json
import os
import sys
import time

import httpx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="+", help="patterns such as sensors.*.temp or logs.>")
    parser.add_argument("--url", default=os.environ.get("PIGLIX_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--last-event-id", help="resume after this message id, or `earliest`")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    args = parser.parse_args()

    last_id = args.last_event_id
    received = 0
    backoff = 0.1
    # No read timeout: an idle stream gets heartbeats, and waiting is the point.
    timeout = httpx.Timeout(10.0, read=None)
    urls = [u.strip() for u in args.url.split(",") if u.strip()]
    node = 0
    while True:
        with httpx.Client(base_url=urls[node], http1=False, http2=True, timeout=timeout) as client:
            while True:
                headers = {"Accept": "application/x-ndjson"}
                if last_id:
                    headers["Last-Event-ID"] = last_id
                params = [("topic", pattern) for pattern in args.patterns]
                try:
                    with client.stream("GET", "/v1/subscribe", params=params, headers=headers) as response:
                        if response.is_client_error:
                            response.read()
                            sys.exit(f"subscribe refused: {response.status_code} {response.json().get('detail')}")
                        response.raise_for_status()
                        print(f"# connected over {response.http_version}; newest retained id: "
                              f"{response.headers.get('last-event-id', 'none')}", flush=True)
                        backoff = 0.1
                        for line in response.iter_lines():
                            if not line:
                                continue
                            record = json.loads(line)
                            kind = record.get("type")
                            if kind == "message":
                                last_id = record["id"]
                                data = record["data"] if "data" in record else "base64:" + record["data_b64"]
                                print(f"{record['id']} {record['topic']} {data}", flush=True)
                                received += 1
                                if args.count is not None and received >= args.count:
                                    print(f"# last-id {last_id}", flush=True)
                                    return 0
                            elif kind == "view":
                                print(f"# view {record['view']} of {record['group']}: {' '.join(record['members'])}"
                                      f"{'' if record['primary'] else ' (not primary)'}", flush=True)
                            elif kind == "gap":
                                print(f"# gap: {record['lost']} messages lost ({record['reason']})", flush=True)
                            elif kind == "end":
                                print(f"# end: {record['reason']}; reconnecting", flush=True)
                            else:
                                print(f"# {kind}", flush=True)
                except (httpx.TransportError, httpx.HTTPStatusError) as error:
                    node = (node + 1) % len(urls)
                    print(f"# connection lost ({error.__class__.__name__}); retrying on {urls[node]} in {backoff:.1f}s", flush=True)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
