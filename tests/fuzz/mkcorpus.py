#!/usr/bin/env python3
"""Writes the seed and regression inputs of tests/fuzz/corpus/ (run from anywhere; files are
rewritten, others left alone). accept-* and reject-* files are regression inputs whose verdict
the replay checks (replay.c); seed-* files only seed the fuzzer. Inputs libFuzzer finds are
added by hand (tests/fuzz/README.md)."""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def tag(field, wt):
    return varint(field << 3 | wt)


def f_varint(field, v):
    return tag(field, 0) + varint(v)


def f_len(field, data):
    return tag(field, 2) + varint(len(data)) + data


def f_str(field, s):
    return f_len(field, s.encode() if isinstance(s, str) else s)


def packed_fixed64(field, vals):
    return f_len(field, b"".join(struct.pack("<Q", v) for v in vals))


def packed_varint(field, vals):
    return f_len(field, b"".join(varint(v) for v in vals))


def hello(cid="c0", consultation="fuzz-consultation", version=1):
    return f_str(1, cid) + (f_str(2, consultation) if consultation else b"") + f_varint(3, version)


def batch(seq, ballots, projects, nonce=b"\x11" * 16):
    body = b""
    if seq:
        body += f_varint(1, seq)
    if ballots:
        body += packed_fixed64(2, ballots)
    if projects:
        body += packed_varint(3, projects)
    if nonce:
        body += f_len(4, nonce)
    return body


def frame(field, body):
    return f_len(field, body)


def hdr(payload):
    return struct.pack(">I", len(payload)) + payload


TOTALS = f_varint(1, 3) + f_varint(2, 122) + f_varint(3, 100) + f_varint(4, 15) + f_varint(5, 5)
WELCOME = (f_varint(1, 2) + f_varint(2, 1) + f_varint(3, 100000) + f_varint(4, 8 << 20)
           + f_str(5, "fuzz-consultation") + f_len(6, TOTALS) + f_varint(7, 3) + f_varint(8, 30000))
ACK = (f_varint(1, 1) + f_varint(2, 3) + f_varint(3, 1) + f_varint(4, 1) + f_varint(5, 1)
       + f_varint(6, 1) + f_varint(7, 1) + f_len(8, TOTALS) + f_varint(9, 0))
ERROR = f_varint(1, 6) + f_str(2, "batch seq 3 skips ahead") + f_varint(3, 2)
B1 = batch(1, [1, 2, 2, 3], [1, 2, 3, 99])
# Weakness inputs (tests/fuzz/README.md): each must be refused by wire_message_check.
FIELD0_MULTI = b"\x80\x00" + b"\x00"            # field 0 as a 2-byte tag, varint 0
ISSUE506 = b"\xf8\xff\xff\xff\x7f" + b"\x00"     # 5-byte tag: 0x7f << 25 overflows int
GROUP = b"\x0b\x0c"                              # field 1, start group / end group
VARINT65 = tag(1, 0) + b"\xff" * 9 + b"\x02"     # a varint over 64 bits
FLOOD = frame(3, b"") * 300                      # 300 empty Batch fields: 300 unpacks
BOOL_LEN = frame(4, f_len(7, b"xyz"))            # Ack.retransmit (bool) as bytes


def spool_image(seq, frame_bytes, votes, cursor=b"", sum_ok=True):
    head = b"TLYB" + struct.pack("<IQIIII", 1, seq, votes, len(frame_bytes), len(cursor), 0)
    img = head + frame_bytes + cursor
    s = hashlib.blake2b(img, digest_size=16).digest()
    return img + (s if sum_ok else bytes(16))


def state_image(next_seq, cid):
    img = b"TLYS" + struct.pack("<IQQQII", 1, next_seq, 0, 0, len(cid), 0) + cid.encode()
    return img + hashlib.blake2b(img, digest_size=16).digest()


CORPUS = {
    "frame": {
        "accept-session": hdr(frame(1, hello())) + hdr(frame(3, B1)) + hdr(frame(6, f_varint(1, 7))),
        "accept-server-frames": hdr(frame(2, WELCOME)) + hdr(frame(4, ACK)) + hdr(frame(5, ERROR)),
        "accept-unpacked": hdr(frame(1, hello())) + hdr(frame(3, f_varint(1, 1)
            + b"".join(tag(2, 1) + struct.pack("<Q", b) for b in (5, 6, 7))
            + b"".join(f_varint(3, p) for p in (1, 2, 3)))),
        "accept-unknown-fields": hdr(frame(1, hello())) + hdr(frame(3, B1 + f_varint(15, 1)
            + f_str(16, "x")) + f_varint(9, 4)),
        "accept-empty-ping": hdr(frame(6, b"")),
        "accept-max-field-number": hdr(frame(6, f_varint(536870911, 1))),
        "reject-field0-multibyte": hdr(frame(6, FIELD0_MULTI)),
        "reject-field0-top": hdr(FIELD0_MULTI),
        "reject-field0-nested": hdr(frame(2, f_len(6, FIELD0_MULTI))),
        "reject-field-number-2e29": hdr(frame(6, f_varint(536870912, 1))),
        "reject-issue506": hdr(ISSUE506),
        "reject-issue506-in-batch": hdr(frame(1, hello())) + hdr(frame(3, ISSUE506)),
        "reject-group": hdr(frame(6, GROUP)),
        "reject-varint-65-bits": hdr(frame(6, VARINT65)),
        "reject-empty-batch-flood": hdr(frame(1, hello())) + hdr(FLOOD),
        "reject-bool-as-bytes": hdr(BOOL_LEN),
        "reject-empty-packed": hdr(frame(1, hello())) + hdr(frame(3, f_varint(1, 1) + f_len(3, b""))),
        "reject-packed-unfinished-varint": hdr(frame(1, hello())) + hdr(frame(3, f_varint(1, 1)
            + f_len(3, b"\xff"))),
        "reject-packed-fixed64-short": hdr(frame(1, hello())) + hdr(frame(3, f_varint(1, 1)
            + f_len(2, b"\x01" * 7))),
        "reject-length-past-end": hdr(frame(3, B1)[:-3]),
        "reject-empty-frame": struct.pack(">I", 0),
        "reject-too-large-before-hello": struct.pack(">I", 4097) + b"\x00" * 8,
        "reject-hello-nul": hdr(frame(1, f_str(1, b"c0\x00junk") + f_varint(3, 1))),
        "reject-no-message": hdr(f_varint(9, 1)),
        "seed-mid-frame": hdr(frame(1, hello()))[:7],
    },
    "batch": {
        "accept-batch": b"\xfd" + B1,
        "accept-batch-c1": b"\xff" + B1,
        "accept-batch-no-nonce": b"\xfd" + batch(1, [9], [5], nonce=b""),
        "accept-empty-batch": b"\xfd" + batch(1, [], [], nonce=b""),
        "accept-hello": b"\x00" + frame(1, hello()),
        "accept-hello-any-consultation": b"\x00" + frame(1, hello(consultation=None)),
        "reject-seq0": b"\xfd" + batch(0, [1], [1]),
        "reject-gap": b"\xfd" + batch(2, [1], [1]),
        "reject-mismatch": b"\xfd" + batch(1, [1, 2], [1]),
        "reject-too-many": b"\x01" + batch(1, [1, 2], [1, 2]),
        "reject-nonce-33": b"\xfd" + batch(1, [1], [1], nonce=b"n" * 33),
        "reject-hello-bad-id": b"\x00" + frame(1, hello(cid="c 0")),
        "reject-hello-id-64": b"\x00" + frame(1, hello(cid="c" * 64)),
        "reject-hello-unknown": b"\x00" + frame(1, hello(cid="c9")),
        "reject-hello-version": b"\x00" + frame(1, hello(version=2)),
        "reject-hello-consultation": b"\x00" + frame(1, hello(consultation="other")),
        "reject-field0-in-batch": b"\xfd" + B1 + FIELD0_MULTI,
        "reject-issue506-in-batch": b"\xfd" + ISSUE506,
        "reject-ping": b"\x00" + frame(6, f_varint(1, 1)),
    },
    "registry_csv": {
        "accept-basic": b"project_id,project_name,circuit_id,circuit_name,state,seats\n"
                        b"1001,Escuela,100,Alpha,Zulia,2\n1002,\"Cancha, \"\"grande\"\"\",100,Alpha,Zulia,2\n",
        "accept-bom-crlf-multiline": b"\xef\xbb\xbfproject_id,project_name,circuit_id,circuit_name,state,seats\r\n"
                                     b"1,\"Luz\r\nsolar\",2,\"Beta\",Lara,1\r\n\r\n3,Agua,2,Beta,Lara,1",
        "accept-utf8": "project_id,project_name,circuit_id,circuit_name,state,seats\n"
                       "7,Cañería,8,Ñu,Mérida,2147483647\n".encode(),
        "accept-header-only": b"project_id,project_name,circuit_id,circuit_name,state,seats\n",
        "reject-empty": b"",
        "reject-bad-header": b"project,name\n1,a\n",
        "reject-seats0": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a,2,b,c,0\n",
        "reject-seats-big": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a,2,b,c,2147483648\n",
        "reject-id-big": b"project_id,project_name,circuit_id,circuit_name,state,seats\n4294967296,a,2,b,c,1\n",
        "reject-bare-quote": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a\"b,2,b,c,1\n",
        "reject-unterminated": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,\"a,2,b,c,1\n",
        "reject-nul": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a\x00,2,b,c,1\n",
        "reject-bad-utf8": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a\xff,2,b,c,1\n",
        "reject-lone-cr": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a\rb,2,b,c,1\n",
        "reject-seven-fields": b"project_id,project_name,circuit_id,circuit_name,state,seats\n1,a,2,b,c,1,x\n",
    },
    "vote_csv": {
        "accept-basic": b"voter,project_id\nalice,1\n\"b,ob\",2\r\n\n\"c \"\"q\"\"\",4294967295",
        "accept-bom-no-header": b"\xef\xbb\xbfv1,7\nv2,8\n",
        "accept-empty": b"",
        "accept-three-fields": b"a,1,x\n",
        "reject-project-big": b"a,4294967296\n",
        "reject-unterminated": b"\"a,1\n",
        "reject-after-quote": b"\"a\"x,1\n",
        "reject-empty-voter": b"voter,project\n,5\n",
        "reject-not-number": b"voter,project\nv,abc\n",
        "seed-key-hex": b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    },
    "spool": {},
    "http_query": {
        "accept-summary": b"\x00/v1/summary",
        "accept-results-csv": b"\x00/v1/results?state=Zulia&format=csv",
        "accept-results-circuit": b"\x00/v1/results?circuit=100&format=json",
        "accept-circuit": b"\x00/v1/circuits/200",
        "accept-circuits-state": b"\x00/v1/circuits?state=Distrito%20Capital",
        "accept-collectors-head": b"\x02/v1/collectors",
        "accept-events-last-id": b"\x00/v1/events\nLast-Event-ID: 11",
        "accept-events-query-id": b"\x00/v1/events?last_event_id=12",
        "accept-metrics": b"\x00/metrics",
        "accept-healthz": b"\x00/healthz",
        "accept-readyz": b"\x00/readyz",
        "accept-not-modified": b"\x00/v1/summary\nIf-None-Match: *",
        "reject-circuit-too-big": b"\x00/v1/results?circuit=4294967296",
        "reject-circuit-unknown": b"\x00/v1/circuits/999",
        "reject-state-unknown": b"\x00/v1/results?state=Nowhere",
        "reject-format": b"\x00/v1/results?format=xml",
        "reject-circuits-circuit": b"\x00/v1/circuits?circuit=100",
        "reject-not-found": b"\x00/v2/summary",
        "reject-post": b"\x01POST /v1/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "reject-bad-request-line": b"\x01GARBAGE\r\n\r\n",
        "seed-keep-alive-close": b"\x00/v1/summary?\nConnection: keep-alive, close",
    },
}

# The spool: byte 0 is the harness mode (fuzz_spool.c).
_good_frame = hdr(frame(3, batch(1, [1, 2], [1, 2])))
CORPUS["spool"] = {
    "accept-batch": b"\x00" + spool_image(1, _good_frame, 2),
    "accept-batch-cursor": b"\x00" + spool_image(1, _good_frame, 2, cursor=b"C" * 48),
    "accept-batch-harness-sum": b"\x01" + spool_image(1, _good_frame, 2)[:-16],
    "accept-own-state": b"\x02" + struct.pack("<H", len(state_image(2, "fuzz-collector")))
                        + state_image(2, "fuzz-collector") + spool_image(1, _good_frame, 2),
    "reject-bad-sum": b"\x00" + spool_image(1, _good_frame, 2, sum_ok=False),
    "reject-torn-newest": b"\x08" + spool_image(1, _good_frame, 2, sum_ok=False),
    "reject-votes-mismatch": b"\x00" + spool_image(1, _good_frame, 3),
    "reject-not-a-batch": b"\x00" + spool_image(1, hdr(frame(1, hello())), 1),
    "reject-seq-mismatch": b"\x00" + spool_image(1, hdr(frame(3, batch(2, [1], [1]))), 1),
    "reject-field0-in-frame": b"\x00" + spool_image(1, hdr(frame(3, batch(1, [1], [1]) + FIELD0_MULTI)), 1),
    "reject-other-collector": b"\x02" + struct.pack("<H", len(state_image(2, "someone-else")))
                              + state_image(2, "someone-else") + spool_image(1, _good_frame, 2),
    "reject-state-next-seq-0": b"\x02" + struct.pack("<H", len(state_image(0, "fuzz-collector")))
                               + state_image(0, "fuzz-collector"),
}

for harness, files in CORPUS.items():
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
print("wrote", sum(len(f) for f in CORPUS.values()), "files")
