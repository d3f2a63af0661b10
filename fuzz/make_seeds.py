#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/: a few valid inputs per target, so the
fuzzer starts from requests that reach deep paths. Run from anywhere; rewrites the seeds."""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protobuf, by hand (proto3: varint = 0, length-delimited = 2) ---
def varint(n):
    if n < 0:
        n += 1 << 64
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def f_int(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def range_req(key, end=b"", limit=0, revision=0, sort_order=0, sort_target=0, **kw):
    m = f_bytes(1, key)
    if end:
        m += f_bytes(2, end)
    if limit:
        m += f_int(3, limit)
    if revision:
        m += f_int(4, revision)
    if sort_order:
        m += f_int(5, sort_order)
    if sort_target:
        m += f_int(6, sort_target)
    for field, name in [(7, "serializable"), (8, "keys_only"), (9, "count_only")]:
        if kw.get(name):
            m += f_int(field, 1)
    for field, name in [(10, "min_mod"), (11, "max_mod"), (12, "min_create"), (13, "max_create")]:
        if kw.get(name):
            m += f_int(field, kw[name])
    return m


def put_req(key, value, prev_kv=False, lease=0):
    m = f_bytes(1, key) + f_bytes(2, value)
    if lease:
        m += f_int(3, lease)
    if prev_kv:
        m += f_int(4, 1)
    return m


def delete_req(key, end=b"", prev_kv=False):
    m = f_bytes(1, key)
    if end:
        m += f_bytes(2, end)
    if prev_kv:
        m += f_int(3, 1)
    return m


def compare(key, result, target, union_field, union_value, end=b""):
    m = f_int(1, result) + f_int(2, target) + f_bytes(3, key)
    m += f_bytes(union_field, union_value) if union_field == 7 else f_int(union_field, union_value)
    if end:
        m += f_bytes(64, end)
    return m


def txn(compares, success, failure):
    m = b"".join(f_bytes(1, c) for c in compares)
    m += b"".join(f_bytes(2, o) for o in success)
    m += b"".join(f_bytes(3, o) for o in failure)
    return m


def op_range(m):
    return f_bytes(1, m)


def op_put(m):
    return f_bytes(2, m)


def op_delete(m):
    return f_bytes(3, m)


# --- record: mode byte, then the mode's bytes ---
def record(payload):
    return struct.pack("<I", zlib.crc32(payload)) + payload


write("record", "valid", b"\x00" + record(b"hello"))
write("record", "empty-payload", b"\x00" + record(b""))
write("record", "short", b"\x00\x01\x02")
write("record", "flip-bit", b"\x01" + b"\x00\x07\x00\x00\x00\xff\x01\x01" + b"payload bytes")
write("record", "burst", b"\x01" + b"\x01\x03\x00\x00\x00\x0f\xf0\x01" + b"a longer payload of some bytes")
write("record", "three-bits", b"\x01" + b"\x02\x09\x00\x00\x00\x05\x07\x01" + b"three flipped bits")
write("record", "disk-log", b"\x02\x05" + record(b"raft entry"))
write("record", "disk-log-bad", b"\x02\x01" + b"\x00\x00\x00\x00bad")
write("record", "disk-blob", b"\x03" + record(b"snapshot bytes"))

# --- http_api: "METHOD TARGET\nheaders\n\nbody" ---
http = {
    "get": "GET /v1/kv/a\n\n",
    "get-rev": "GET /v1/kv/a?revision=3&consistency=lease\n\n",
    "get-b64": "GET /v1/kv/YQ==?encoding=base64\n\n",
    "put": "PUT /v1/kv/k?prev_kv=true\ncontent-type: application/octet-stream\n\nvalue",
    "put-idem": "PUT /v1/kv/k\nidempotency-key: 42\n\nv",
    "delete-prefix": "DELETE /v1/kv/c/?prefix=true&prev_kv=true\n\n",
    "scan": "GET /v1/kv?prefix=c/&limit=1&keys_only=true\n\n",
    "scan-after": "GET /v1/kv?prefix=&after=a&revision=4&consistency=local\n\n",
    "txn": 'POST /v1/txn\ncontent-type: application/json\n\n'
    '{"compare":[{"key":"a","target":"value","op":"=","value":"3"}],'
    '"success":[{"put":{"key":"a","value":"b","prev_kv":true}},{"get":{"key":"c/","prefix":true,"limit":1}}],'
    '"failure":[{"delete":{"key":"a","prefix":true,"prev_kv":true}}]}',
    "txn-b64": 'POST /v1/txn\ncontent-type: application/json\n\n'
    '{"compare":[{"key":"YQ==","target":"mod_revision","op":">","value":1,"encoding":"base64"}],'
    '"success":[{"get":{"key":"YQ==","encoding":"base64","keys_only":true}}]}',
    "compact": 'POST /v1/compact\ncontent-type: application/json\n\n{"revision":3}',
    "cluster": "GET /v1/cluster\n\n",
    "readyz": "GET /readyz\n\n",
    "metrics": "GET /metrics\n\n",
    "not-found": "GET /nope\n\n",
    "wrong-method": "PATCH /v1/kv/a\n\n",
}
for name, text in http.items():
    write("http_api", name, text)

# --- etcd_grpc: method index, flags, values, message ---
def grpc(method, msg, flags=0, values=0):
    return bytes([method, flags, values]) + msg


write("etcd_grpc", "range", grpc(0, range_req(b"a")))
write("etcd_grpc", "range-prefix", grpc(0, range_req(b"c/", b"c0", limit=1, keys_only=True), flags=2, values=0x10))
write("etcd_grpc", "range-sorted", grpc(0, range_req(b"\x00", b"\x00", sort_order=2, sort_target=3, min_mod=2)))
write("etcd_grpc", "range-rev", grpc(0, range_req(b"a", revision=3, count_only=True, serializable=True)))
write("etcd_grpc", "put", grpc(1, put_req(b"k", b"v", prev_kv=True)))
write("etcd_grpc", "put-idem", grpc(1, put_req(b"k", b"v"), flags=1, values=0))
write("etcd_grpc", "delete", grpc(2, delete_req(b"c/", b"c0", prev_kv=True)))
write(
    "etcd_grpc",
    "txn",
    grpc(
        3,
        txn(
            [compare(b"a", 0, 3, 7, b"3"), compare(b"c/", 2, 2, 6, 9, end=b"c0")],
            [op_put(put_req(b"a", b"x", prev_kv=True)), op_range(range_req(b"a"))],
            [op_delete(delete_req(b"b"))],
        ),
    ),
)
write("etcd_grpc", "compact", grpc(4, f_int(1, 3)))
write("etcd_grpc", "status", grpc(5, b""))
write("etcd_grpc", "alarm", grpc(6, f_int(1, 0)))
write("etcd_grpc", "member-list", grpc(7, b""))

# --- node_rpc: flags, grpc-timeout line, Envelope ---
def envelope(method, payload=b"", cluster=7, group=0):
    return (
        f_int(1, cluster) + f_int(2, 2) + f_int(3, 1) + f_int(4, group)
        + f_bytes(5, method) + (f_bytes(6, payload) if payload else b"")
    )


write("node_rpc", "hello", b"\x01" + b"5S\n" + envelope("admin.hello", cluster=0))
write("node_rpc", "status", b"\x00" + b"\n" + envelope("admin.status"))
# kv.forward: ForwardRequest { group: 2, op: GroupOp::Compact { revision: 3, request_id: 7 } }
write("node_rpc", "forward", b"\x01" + b"100m\n" + envelope("kv.forward", bytes([2, 2, 3, 7]), group=2))
write("node_rpc", "raft", b"\x00" + b"\n" + envelope("raft.append", b"\x00", group=3))


# Stream: flags bit 1, then messages of one length byte and that many bytes of StreamCall.
def stream_call(call_id, env, timeout_micros=0):
    return f_int(1, call_id) + f_bytes(2, env) + (f_int(3, timeout_micros) if timeout_micros else b"")


def chunked(*msgs):
    return b"".join(bytes([len(m)]) + m for m in msgs)


write("node_rpc", "stream", b"\x02" + b"\n" + chunked(
    stream_call(1, envelope("admin.status")),
    stream_call(2, envelope("raft.append", b"\x00", group=3), 500_000),
    stream_call(3, envelope("kv.forward", bytes([2, 2, 3, 7]), group=2)),
))

# --- wire_codec: type index, postcard bytes ---
write("wire_codec", "kv-entry-compact", bytes([7, 0, 5, 1, 3]))
write("wire_codec", "command-kv", bytes([6, 0, 1, 0x2A, 9, 1, 3]))
write("wire_codec", "forward-compact", bytes([2, 2, 2, 3, 7]))
write("wire_codec", "hello", bytes([5, 1, 3]) + b"abc" + bytes([2]) + b"eu" + bytes([1]) + b"a" + bytes([0]))
write("wire_codec", "group-reply-done", bytes([3, 0, 2]))
