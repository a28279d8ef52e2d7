"""Schemathesis hooks for docs/openapi.yaml (loaded by scripts/schemathesis.sh
through SCHEMATHESIS_HOOKS).

Schemathesis knows JSON, YAML, forms and raw bytes; Piglix also speaks NDJSON
(`application/x-ndjson`) and binary frames (`application/vnd.piglix.frames`):

- NDJSON request bodies: the schema describes the lines as an array of
  records; the serializer writes one JSON value per line.
- NDJSON responses: the deserializer reads one JSON value per line into a
  list, so `response_schema_conformance` checks every ack against
  `PublishAck`.
- Frames request bodies: a strategy that writes sequences of `publish`
  frames, mostly well-formed, some with bad levels, bad topics, wrong frame
  types, truncated or oversize lengths (docs/protocol.md, "Binary frames").
"""

import json
import struct

import schemathesis
from hypothesis import strategies as st


def _ndjson_line(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@schemathesis.serializer("application/x-ndjson")
def ndjson_serializer(ctx, value):
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return b"".join(_ndjson_line(item) + b"\n" for item in items)


@schemathesis.deserializer("application/x-ndjson")
def ndjson_deserializer(ctx, response):
    text = response.content.decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


_TOKEN = st.from_regex(r"\A[A-Za-z0-9_:@~-]{1,12}\Z")
_TOPIC = st.one_of(
    st.lists(_TOKEN, min_size=1, max_size=4).map(".".join),
    st.text(max_size=20),  # mostly invalid topics
)


def _short_string(text):
    data = text.encode("utf-8", "surrogatepass")[:0xFFFF]
    return struct.pack(">H", len(data)) + data


@st.composite
def _publish_frame(draw):
    level = draw(st.sampled_from([0, 1, 2, 0, 0, 7]))  # 7: unknown level
    body = bytes([level]) + _short_string(draw(_TOPIC))
    headers = draw(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3))
    body += bytes([len(headers)])
    for name, value in headers:
        body += _short_string(name) + _short_string(value)
    body += draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["ok"] * 8 + ["type", "truncated", "oversize", "short"]))
    frame_type = 0x01
    length = len(body)
    if kind == "type":
        frame_type = draw(st.sampled_from([0x00, 0x02, 0x03, 0x04, 0x05, 0xFF]))
    elif kind == "truncated":
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    elif kind == "oversize":
        length = draw(st.integers(min_value=1 << 24, max_value=0xFFFFFFFF))
    elif kind == "short":
        body = body[:1]
        length = len(body)
    return bytes([frame_type]) + struct.pack(">I", length) + body


_FRAMES = st.tuples(st.lists(_publish_frame(), max_size=5), st.binary(max_size=8)).map(
    lambda pair: b"".join(pair[0]) + (pair[1] if len(pair[1]) % 4 == 0 else b"")
)

schemathesis.openapi.media_type("application/vnd.piglix.frames", _FRAMES)
