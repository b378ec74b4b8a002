#!/usr/bin/python3
"""Writes seed inputs for fuzz_client_session into fuzz/corpus/client_session/, each
file named by the SHA-1 of its content (existing files are kept).

    /usr/bin/python3 fuzz/make_client_seeds.py

Input layout (see fuzz/fuzz_client_session.cc): chunk size byte, mode byte, then the
server's frames. Protobuf bodies are encoded by hand (varints and length-delimited
fields), so this needs no protobuf package.
"""
import hashlib
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus", "client_session")

T = {"Welcome": 0x002, "AuthOk": 0x004, "SubscribeOk": 0x011, "UnsubscribeOk": 0x013, "Publication": 0x020,
     "PublishOk": 0x022, "Dismiss": 0x024, "Ping": 0x030, "Pong": 0x031, "Error": 0x032, "GoAway": 0x033}


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def vfield(num, value):
    return varint(num << 3) + varint(value)


def sfield(num, value):
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value


def frame(name, body, seq, flags=0, version=1):
    return b"HRLD" + struct.pack(">HHII", version, flags | T[name], len(body), seq) + body


def pub(channel, epoch, offset, payload=b"x", priority=0):
    return sfield(1, channel) + vfield(2, offset) + sfield(3, epoch) + sfield(5, "t") + vfield(6, priority) + \
        sfield(11, payload)


def save(data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    # Mode 6 (depth 3): READY with both subscriptions active; the server's next sequence is 4.
    ready = lambda chunk, frames: save(bytes([chunk, 6]) + b"".join(frames))
    ready(0, [frame("Publication", pub("news", "E", 1), 4), frame("Publication", pub("news", "E", 3), 5),
              frame("Publication", pub("news", "E", 2), 6), frame("Publication", pub("news", "E", 2), 7)])
    ready(3, [frame("Ping", vfield(1, 9), 4), frame("Publication", pub("user:alice", "E", 1, b"{}"), 5)])
    ready(0, [frame("Publication", pub("news", "E2", 1), 4)])                      # epoch change
    ready(0, [frame("GoAway", vfield(1, 603) + sfield(2, "bye") + vfield(3, 1000), 4)])
    ready(0, [frame("Error", vfield(1, 600) + sfield(2, "slow"), 4)])
    ready(0, [frame("Error", vfield(1, 505) + vfield(4, 1), 4)])                   # request-level
    ready(0, [frame("Dismiss", sfield(1, "news") + vfield(2, 1), 4), frame("Pong", vfield(1, 1), 5)])
    ready(1, [frame("Publication", pub("news", "E", 5), 4)])                       # gap, then timers
    ready(0, [frame("UnsubscribeOk", vfield(1, 5) + sfield(2, "news"), 4)])
    ready(0, [frame("AuthOk", sfield(1, "alice") + vfield(2, 1_700_000_020_000), 4)])  # refresh answer
    ready(0, [frame("Publication", b"\x0a\x09", 4)])                                # truncated field
    ready(0, [frame("Welcome", vfield(1, 1), 4)])                                  # misplaced
    save(bytes([0, 7]) + frame("Publication", pub("news", "E", 1), 4))             # manual acks
    # Earlier states.
    save(bytes([0, 0]) + frame("Welcome", vfield(1, 1) + sfield(8, "s"), 0) + frame("AuthOk", sfield(1, "a"), 1))
    save(bytes([1, 0]) + frame("Welcome", vfield(1, 2), 0))                       # version not offered
    save(bytes([0, 0]) + frame("Error", vfield(1, 501), 0))
    save(bytes([0, 2]) + frame("Ping", vfield(1, 1), 1) + frame("AuthOk", b"", 2))
    save(bytes([0, 4]) + frame("SubscribeOk", vfield(1, 1) + sfield(2, "news") + sfield(3, "E") + vfield(4, 3) +
                                  vfield(5, 1), 2))
    save(bytes([0, 0]) + b"HRLE" + b"\x00" * 12)
    save(bytes([2, 6]) + frame("Publication", pub("news", "E", 1), 4, flags=0x8000))   # zstd not negotiated


if __name__ == "__main__":
    main()
