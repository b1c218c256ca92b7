#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets in fuzz/ (files
named seed-*, a few hundred bytes each) into fuzz/corpus/<target>/.

    python3 fuzz/seeds.py

Only the standard library: RecordBatch v2 (uncompressed), CRC-32C and the
protobuf wire format are built here, so a seed never depends on the code it is meant to test.
The fuzzers' own finds sit beside these seeds (named by their SHA-1).
"""

import json
import os
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    """Zigzag varint, as Kafka's records use."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def record(offset_delta, ts_delta, key, value, headers=()):
    body = bytearray(b"\x00")  # attributes
    body += varint(ts_delta) + varint(offset_delta)
    for field in (key, value):
        body += varint(-1) if field is None else varint(len(field)) + field
    body += varint(len(headers))
    for k, v in headers:
        body += varint(len(k)) + k + varint(len(v)) + v
    return varint(len(body)) + bytes(body)


def batch(base_offset, values, base_ts=1_700_000_000_000, epoch=0, keys=None):
    keys = keys or [None] * len(values)
    records = b"".join(
        record(i, i, k, v, [(b"h", b"1")] if i == 0 else [])
        for i, (k, v) in enumerate(zip(keys, values))
    )
    n = len(values)
    # attributes .. records: what the CRC covers
    tail = struct.pack(
        ">hiqqqhii", 0, n - 1, base_ts, base_ts + n - 1, -1, -1, -1, n
    ) + records
    head = struct.pack(">ib", epoch, 2)  # partition leader epoch, magic
    crc = struct.pack(">I", crc32c(tail))
    length = len(head) + len(crc) + len(tail)
    return struct.pack(">qi", base_offset, length) + head + crc + tail


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# Protocol buffers (proto3 wire format), for the grpc_requests seeds.
def pb_uvarint(n):
    n &= (1 << 64) - 1  # negative int32/int64: ten bytes, two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_int(field, n):
    return pb_uvarint(field << 3) + pb_uvarint(n) if n else b""


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return pb_uvarint(field << 3 | 2) + pb_uvarint(len(data)) + data


def pb_packed(field, values):
    return pb_bytes(field, b"".join(pb_uvarint(v) for v in values)) if values else b""


# grpc_requests: the first byte picks the request (fuzz/src/grpc.rs KINDS).
GRPC_KINDS = {
    "CreateTopic": 0, "DeleteTopic": 1, "AddPartitions": 2, "ElectPreferredLeaders": 3,
    "ExecuteReassignment": 4, "FindCoordinatorPartition": 5, "DescribeTopics": 6,
    "Produce": 7, "Fetch": 8, "ListOffsets": 9, "GroupHeartbeat": 10,
    "CommitOffsets": 11, "FetchOffsets": 12, "DescribeGroup": 13, "DeleteGroup": 14,
    "ProposeBalance": 15,
}


def grpc_seeds(one_batch):
    def w(kind, name, message):
        write("grpc_requests", name, bytes([GRPC_KINDS[kind]]) + message)

    replica_list = lambda rs: pb_packed(1, rs)  # ReplicaList
    config = lambda k, v: pb_bytes(5, pb_bytes(1, k) + pb_bytes(2, v))  # map entry
    w("CreateTopic", "create-placed",
      pb_bytes(1, "events") + pb_int(2, 6) + pb_int(3, 2)
      + config("retention.ms", "86400000") + config("cleanup.policy", "compact")
      + pb_bytes(6, "req-1"))
    w("CreateTopic", "create-manual",
      pb_bytes(1, "audit.log") + pb_bytes(4, replica_list([1, 2])) + pb_bytes(4, replica_list([2, 1]))
      + pb_int(7, 1))
    w("DeleteTopic", "delete", pb_bytes(1, "orders"))
    w("AddPartitions", "add-placed", pb_bytes(1, "orders") + pb_int(2, 5))
    w("AddPartitions", "add-manual", pb_bytes(1, "orders") + pb_int(2, 4) + pb_bytes(3, replica_list([2, 1])))
    w("ElectPreferredLeaders", "elect", pb_bytes(1, "orders"))
    part = lambda t, p, rs: pb_bytes(1, pb_bytes(1, t) + pb_int(2, p) + pb_packed(3, rs))
    w("ExecuteReassignment", "reassign",
      part("orders", 0, [2, 1]) + part("orders", 1, [1, 3]) + pb_int(2, 1 << 20) + pb_int(5, 1))
    w("FindCoordinatorPartition", "find-coordinator", pb_bytes(1, "g") + pb_int(2, 50))
    w("DescribeTopics", "describe", pb_bytes(1, "orders") + pb_int(2, 1))
    w("Produce", "produce",
      pb_int(1, -1) + pb_int(2, 30000)
      + pb_bytes(3, pb_bytes(1, "orders") + pb_int(2, 0) + pb_bytes(3, one_batch)))
    w("Fetch", "fetch",
      pb_int(1, -1) + pb_int(3, 500) + pb_int(4, 1) + pb_int(5, 1 << 20)
      + pb_bytes(6, pb_bytes(1, "orders") + pb_int(3, 5) + pb_int(4, -1) + pb_int(5, -1)))
    w("ListOffsets", "list-offsets", pb_bytes(1, pb_bytes(1, "orders") + pb_int(3, -2) + pb_int(4, -1)))
    w("GroupHeartbeat", "heartbeat-join",
      pb_bytes(1, "g") + pb_bytes(2, "m2") + pb_int(6, 45000) + pb_bytes(7, "orders")
      + pb_bytes(9, "client-1"))
    w("GroupHeartbeat", "heartbeat-member",
      pb_bytes(1, "g") + pb_bytes(2, "m") + pb_int(3, 1) + pb_bytes(7, "orders")
      + pb_bytes(8, pb_bytes(1, "orders") + pb_packed(2, [0, 1, 2])))
    w("CommitOffsets", "commit",
      pb_bytes(1, "g") + pb_bytes(2, "m") + pb_int(3, 1)
      + pb_bytes(4, pb_bytes(1, "orders") + pb_int(2, 1) + pb_int(3, 42) + pb_int(4, -1) + pb_bytes(5, "meta")))
    w("FetchOffsets", "fetch-offsets", pb_bytes(1, "g") + pb_bytes(2, pb_bytes(1, "orders") + pb_packed(2, [0, 1])))
    w("DescribeGroup", "describe-group", pb_bytes(1, "g"))
    w("DeleteGroup", "delete-group", pb_bytes(1, "g"))
    w("ProposeBalance", "propose-balance", pb_int(1, 1) + pb_packed(2, [3]))


def main():
    one = batch(0, [b"hello"])
    three = batch(0, [b"a", b"bb", b"ccc"], keys=[b"k1", b"k2", None])
    # produce_request: what a producer sends (offsets are the leader's to set).
    write("produce_request", "one-batch", one)
    write("produce_request", "two-batches", one + three)
    write("produce_request", "torn", three[:-3])

    # segment_recovery: [mode][index len][time index len][index][time index][segment].
    # mode bit 0: shut down cleanly before the hostile indexes go in;
    # bits 1, 2: leave the offset / time index out.
    segment = batch(0, [b"a"], epoch=1) + batch(1, [b"b", b"c"], epoch=1) + batch(3, [b"d"] * 4, epoch=2)
    for mode in (0, 1, 7):
        write("segment_recovery", f"mode{mode}", bytes([mode, 0, 0]) + segment)
    write("segment_recovery", "torn-tail", bytes([0, 0, 0]) + segment[:-5])
    entry = struct.pack(">II", 1, len(batch(0, [b"a"], epoch=1)))  # offset 1 at its position
    tentry = struct.pack(">qI", 1_700_000_000_001, 1)
    write("segment_recovery", "indexes", bytes([1, len(entry), len(tentry)]) + entry + tentry + segment)

    # follower_append: [mode][what a leader's fetch answer carries]; mode bit 0
    # renumbers the batches after the log end, bit 1 stamps the latest epoch.
    fetched = batch(0, [b"a"], epoch=1) + batch(1, [b"b", b"c"], epoch=2)
    for mode in (0, 1, 3):
        write("follower_append", f"mode{mode}", bytes([mode]) + fetched)
    write("follower_append", "torn", bytes([1]) + fetched[:-4])

    # reassignment_json: Kafka's plan format.
    plan = {
        "version": 1,
        "partitions": [
            {"topic": "orders", "partition": 0, "replicas": [1, 2, 3], "log_dirs": ["any"] * 3},
            {"topic": "orders", "partition": 1, "replicas": [2, 3, 4]},
        ],
    }
    write("reassignment_json", "plan", json.dumps(plan, indent=2))
    write("reassignment_json", "empty-plan", '{"version":1,"partitions":[]}')
    write("reassignment_json", "bad-version", '{"version":2,"partitions":[]}')

    # config_toml: a server's config file (docs/OPERATIONS.md).
    write(
        "config_toml",
        "agent",
        """# keys are the flag names (dashes or underscores)
coordinator = "coord1:9410,coord2:9410"
broker-id = 1
rack = "rack-a"
data_dir = "/var/lib/ballast"
listen = "0.0.0.0:9411"
replica-lag-time-max = "30s"
tls = true
verbose = false
endpoints = ["http://etcd1:2379", "http://etcd2:2379"]
ratio = 0.5
""",
    )
    write("config_toml", "coordinator", 'etcd = ["http://127.0.0.1:2379"]\nlease-ttl = "10s"\n')

    grpc_seeds(one)


if __name__ == "__main__":
    main()
