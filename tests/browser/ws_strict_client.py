#!/usr/bin/python3
"""Checks heraldd's WebSocket output with a strict client (python3-websockets, which
fails on masked server frames, invalid UTF-8 in text and illegal close codes), in both
subprotocols, against the real heraldd; then the same over wss:// (ws.tls with a
development certificate). Usage: ws_strict_client.py HERALDD"""
import asyncio, base64, hashlib, hmac, json, os, ssl, struct, subprocess, sys, tempfile, time, urllib.request

import websockets

HERALDD = sys.argv[1]


def token(sub):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    h = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = enc(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    s = enc(hmac.new(b"herald-dev-secret", h + b"." + p, hashlib.sha256).digest())
    return (h + b"." + p + b"." + s).decode()


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


class Frames:
    """Herald frames (docs/protocol.md §2) without checksum or compression."""

    def __init__(self):
        self.seq = 0

    def frame(self, ftype, body):
        f = struct.pack(">IHHII", 0x48524C44, 1, ftype, len(body), self.seq) + body
        self.seq += 1
        return f


def split_frames(msg):
    out, off = [], 0
    while off < len(msg):
        assert len(msg) - off >= 16, "message ends inside a frame header"
        magic, ver, ftype, length, seq = struct.unpack(">IHHII", msg[off:off + 16])
        assert magic == 0x48524C44 and ver == 1
        assert off + 16 + length <= len(msg), "message ends inside a frame body"
        out.append((ftype & 0x0FFF, msg[off + 16:off + 16 + length]))
        off += 16 + length
    return out


def publish(api, channel, payload):
    req = urllib.request.Request(f"http://{api}/v1/publish", method="POST",
                                 data=json.dumps({"channel": channel, "payload": payload}).encode(),
                                 headers={"X-API-Key": "herald-dev-api-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


async def binary_mode(ws_addr, api, scheme="ws", tls=None):
    f = Frames()
    user = "strict" + scheme  # personal channels are durable: one user per server run
    async with websockets.connect(f"{scheme}://{ws_addr}/ws", subprotocols=["herald.v1"], ssl=tls) as ws:
        assert ws.subprotocol == "herald.v1"
        await ws.send(f.frame(0x001, b"\x08\x01"))                    # Hello{versions:[1]}
        welcome = split_frames(await ws.recv())
        assert welcome[0][0] == 0x002, welcome
        await ws.send(f.frame(0x003, field_bytes(1, token(user).encode())))  # Auth
        assert split_frames(await ws.recv())[0][0] == 0x004           # AuthOk
        await ws.send(f.frame(0x010, b"\x08\x01" + field_bytes(2, ("user:" + user).encode())))  # Subscribe
        assert split_frames(await ws.recv())[0][0] == 0x011           # SubscribeOk
        await asyncio.to_thread(publish, api, "user:" + user, {"n": 1})
        msg = await ws.recv()
        assert isinstance(msg, bytes), "herald.v1 sends binary messages"
        frames = split_frames(msg)
        assert frames[0][0] == 0x020, frames                          # Publication
        assert b'{"n":1}' in frames[0][1]
        await ws.close(1000)
        assert ws.close_code == 1000, ws.close_code


async def json_mode(ws_addr, api, scheme="ws", tls=None):
    user = "strictj" + scheme  # personal channels are durable: one user per server run
    async with websockets.connect(f"{scheme}://{ws_addr}/ws", subprotocols=["herald.v1.json"], ssl=tls) as ws:
        await ws.send(json.dumps({"Hello": {"versions": [1]}}))
        welcome = json.loads(await ws.recv())
        assert welcome["Welcome"]["compression"] == "COMPRESSION_NONE", welcome  # browsers: never zstd
        await ws.send(json.dumps({"Auth": {"token": token(user)}}))
        assert "AuthOk" in json.loads(await ws.recv())
        await ws.send(json.dumps({"Subscribe": {"request_id": 1, "channel": "user:" + user}}))
        assert "SubscribeOk" in json.loads(await ws.recv())
        await asyncio.to_thread(publish, api, "user:" + user, {"text": "h\u00e9llo \u2603"})
        pub = json.loads(await ws.recv())["Publication"]
        assert json.loads(base64.b64decode(pub["payload"])) == {"text": "h\u00e9llo \u2603"}
        assert pub["priority"] == "P3"
        # A message that is not herald.v1: an Error (as JSON), then close 1008.
        await ws.send(json.dumps({"Nonsense": {}}))
        err = json.loads(await ws.recv())["Error"]
        assert err["code"] == 102, err                                # kUnknownFrameType
        try:
            await ws.recv()
            raise AssertionError("expected the close")
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1008, e


def start(d, extra):
    ready = os.path.join(d, "ready.json")
    if os.path.exists(ready):
        os.remove(ready)
    proc = subprocess.Popen([HERALDD, "--ready-file", ready, "--listen.tcp", "127.0.0.1:0", "--listen.api",
                             "127.0.0.1:0", "--listen.ws", "127.0.0.1:0", "--server.loops", "1",
                             "--store.dir", os.path.join(d, "data")] + extra,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(1500):
        if os.path.exists(ready):
            return proc, json.load(open(ready))
        time.sleep(0.01)
    raise AssertionError("heraldd did not start: " + proc.communicate(timeout=5)[0].decode(errors="replace"))


async def main():
    d = tempfile.mkdtemp()
    procs = []
    ok = False
    try:
        proc, addr = start(d, [])
        procs.append(proc)
        await binary_mode(addr["ws"], addr["api"])
        await json_mode(addr["ws"], addr["api"])
        print("ok: binary and JSON subprotocols pass the strict client")
        # wss:// with the development certificate of ./dev cert.
        subprocess.run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                       "-keyout key.pem -out cert.pem -subj /CN=localhost "
                       "-addext subjectAltName=DNS:localhost,IP:127.0.0.1", shell=True, cwd=d, check=True,
                       capture_output=True)
        proc, addr = start(d, ["--ws.tls", "true", "--tls.cert_file", os.path.join(d, "cert.pem"),
                               "--tls.key_file", os.path.join(d, "key.pem")])
        procs.append(proc)
        tls = ssl.create_default_context(cafile=os.path.join(d, "cert.pem"))
        await binary_mode(addr["ws"], addr["api"], "wss", tls)
        await json_mode(addr["ws"], addr["api"], "wss", tls)
        try:
            async with websockets.connect(f"ws://{addr['ws']}/ws", open_timeout=3):
                raise AssertionError("plain ws:// must fail on a wss listener")
        except (websockets.InvalidMessage, websockets.InvalidHandshake, OSError, asyncio.TimeoutError, EOFError):
            pass
        print("ok: wss:// passes the strict client")
        ok = True
    finally:
        for p in procs:
            p.terminate()
            out, _ = p.communicate(timeout=10)
            if not ok:
                print(out.decode(errors="replace"))


asyncio.run(main())
