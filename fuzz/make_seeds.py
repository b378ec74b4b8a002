#!/usr/bin/python3
"""Writes seed inputs for Herald's own fuzz targets into fuzz/corpus/<target>/,
each file named by the SHA-1 of its content (existing files are kept).

    /usr/bin/python3 fuzz/make_seeds.py

Sources: the hex test vectors of docs/protocol.md (as stream_decoder inputs),
plus hand-built headers, message bodies and round-trip inputs.
"""
import hashlib
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def save(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def header(type_field, length, seq, version=1, magic=b"HRLD"):
    return magic + struct.pack(">HHII", version, type_field, length, seq)


def vectors():
    text = open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8").read()
    for block in re.findall(r"```vector\n(.*?)```", text, re.S):
        hexpart, knobs, take = [], 0, False
        for line in block.splitlines():
            if line.startswith("hex:"):
                hexpart.append(line[4:])
                take = True
            elif line[:1] in (" ", "\t") and take:
                hexpart.append(line)
            else:
                take = False
            if line.startswith("limits:") and "require_checksum=1" in line:
                knobs |= 2
            if line.startswith("limits:") and "compression=0" in line:
                knobs |= 8
        yield knobs, bytes.fromhex("".join("".join(hexpart).split()))


def main():
    for knobs, stream in vectors():
        save("stream_decoder", bytes([knobs, 0, 0]) + stream)
        save("stream_decoder", bytes([knobs, 0x12, 0x34]) + stream)
        if len(stream) >= 16:
            save("header", stream[:16])
    for t in (0x001, 0x030, 0x4020, 0x2020, 0x8020, 0x1030, 0x0FFF):
        save("header", header(t, 10, 0))
    save("header", header(0x030, 0xFFFFFFFF, 7, version=2))
    # message: first byte selects the frame type (index into the type table).
    save("message", bytes([14]) + b"\x08\x01")                    # Ping nonce 1
    save("message", bytes([9]) + b"\x0a\x04news\x10\x07\x5a\x02hi")  # Publication
    save("message", bytes([0]) + b"\x08\x01\x10\x01\x18\x07")       # Hello
    save("message", bytes([5]) + b"\x12\x02\xc3\x28")               # bad UTF-8
    save("message", bytes([14]) + b"\x0a\x01\x05")                  # wrong wire type
    # roundtrip: option byte, frame size byte, ref byte, payload.
    save("roundtrip", bytes([0x03, 0x00, 0x01]) + b'{"order_id":"O1","price":1}' * 40)
    save("roundtrip", bytes([0x01, 0xFF, 0x07]) + bytes(range(256)))
    save("roundtrip", bytes([0x07, 0x02, 0x00]) + b"x")


if __name__ == "__main__":
    main()
