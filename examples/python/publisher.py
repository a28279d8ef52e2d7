#!/usr/bin/env python3
"""Publish to a Piglix node over HTTP/2 with httpx, no Piglix library.

    python3 publisher.py sensors.paris.temp 21.5 21.7 22.0
    python3 publisher.py --delivery safe orders.eu.created '{"id": 42}'
    python3 publisher.py --batch sensors.paris.temp 1 2 3      # one gzip NDJSON request

Each message is one ``POST /v1/topics/{topic}`` sent after the previous one
was answered, so together they are one publisher session (FIFO order). With
``--batch`` all of them go in one gzip-compressed ``POST /v1/publish`` and the
node answers one NDJSON ack per record, in order. Prints one ack per line.
Node: ``--url`` or ``$PIGLIX_URL`` (default http://127.0.0.1:8080).

Unbreakable publishing: with ``--producer NAME`` each message carries
``Piglix-Producer: NAME`` and ``Piglix-Sequence: N`` (N from
``--first-sequence``, default 1), and ``--url`` may name several nodes of one
cluster separated by commas. A message whose answer is lost (connection
broken, node down, 503) is sent again with the same number to the next
node: the cluster acks a retry of a record it already accepted with the
original id and does not deliver it twice (docs/patterns.md).

    python3 publisher.py --producer orders-7 --url http://n1:8080,http://n2:8080 orders.new '{"id": 1}'

"""
import argparse
import gzip
import json
import os
import sys
import time
from urllib.parse import quote

import httpx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", help="a topic such as sensors.paris.temp")
    parser.add_argument("messages", nargs="+", help="payloads, one message each")
    parser.add_argument("--url", default=os.environ.get("PIGLIX_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--delivery", choices=["fifo", "total", "safe"], default="fifo")
    parser.add_argument("--batch", action="store_true", help="send all messages in one gzip NDJSON batch")
    parser.add_argument("--producer", help="publish idempotently as this producer, retrying on the next node")
    parser.add_argument("--first-sequence", type=int, default=1, help="the first message's sequence number")
    args = parser.parse_args()
    urls = [u.strip() for u in args.url.split(",") if u.strip()]
    if args.producer and not args.batch:
        return publish_idempotently(args, urls)
    args.url = urls[0]

    # http1=False, http2=True on an http:// URL: HTTP/2 with prior knowledge (h2c).
    with httpx.Client(base_url=args.url, http1=False, http2=True, timeout=10.0) as client:
        if args.batch:
            lines = [json.dumps({"topic": args.topic, "data": m, "delivery": args.delivery}) for m in args.messages]
            body = gzip.compress(("\n".join(lines) + "\n").encode())
            response = client.post(
                "/v1/publish",
                content=body,
                headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            )
            report(response)
            failed = 0
            for line in response.text.splitlines():
                ack = json.loads(line)
                failed += 0 if ack["ok"] else 1
                print(json.dumps(ack), flush=True)
            return 1 if failed else 0

        for message in args.messages:
            response = client.post(
                f"/v1/topics/{quote(args.topic, safe='.*>')}",
                content=message.encode(),
                headers={"Piglix-Delivery": args.delivery},
            )
            report(response)
            print(json.dumps(response.json()), flush=True)
    return 0


def report(response: httpx.Response) -> None:
    """Errors are application/problem+json with a precise `detail`."""
    print(f"# {response.http_version} {response.status_code}", file=sys.stderr, flush=True)
    if response.is_error:
        problem = response.json() if response.headers.get("content-type", "").startswith("application/problem+json") else {}
        sys.exit(f"publish failed: {response.status_code} {problem.get('detail', response.text)}")


def publish_idempotently(args, urls) -> int:
    """One message at a time, each retried with its number until a node answers."""
    node = 0
    for offset, message in enumerate(args.messages):
        headers = {"Piglix-Delivery": args.delivery, "Piglix-Producer": args.producer,
                   "Piglix-Sequence": str(args.first_sequence + offset)}
        for attempt in range(50):
            try:
                with httpx.Client(base_url=urls[node], http1=False, http2=True, timeout=10.0) as client:
                    response = client.post(f"/v1/topics/{quote(args.topic, safe='.*>')}",
                                           content=message.encode(), headers=headers)
                if response.status_code not in (429, 502, 503, 504):
                    report(response)
                    print(json.dumps(response.json()), flush=True)
                    break
            except httpx.TransportError:
                pass
            # Lost or refused: the same number, to the next node.
            node = (node + 1) % len(urls)
            time.sleep(min(0.05 * 2 ** attempt, 2.0))
        else:
            sys.exit(f"no node answered for message {offset + 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
