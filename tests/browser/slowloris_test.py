#!/usr/bin/python3
"""slowhttptest -H (slowloris: upgrade request headers trickling in one every second)
against heraldd's /ws with a 2 s upgrade timeout: every connection is closed at the
timeout although it keeps sending, and the service stays available (a real WebSocket
client completes the handshake right after). Usage: slowloris_test.py HERALDD"""
import asyncio, json, os, re, subprocess, sys, tempfile, time

import websockets

HERALDD = sys.argv[1]
TIMEOUT_S = 2
CONNECTIONS = 200


async def still_serves(addr):
    async with websockets.connect(f"ws://{addr}/ws", subprotocols=["herald.v1.json"], open_timeout=5) as ws:
        await ws.send(json.dumps({"Hello": {"versions": [1]}}))
        assert "Welcome" in json.loads(await ws.recv())


def main():
    d = tempfile.mkdtemp()
    ready = os.path.join(d, "ready.json")
    proc = subprocess.Popen([HERALDD, "--ready-file", ready, "--listen.tcp", "127.0.0.1:0", "--listen.api",
                             "127.0.0.1:0", "--listen.ws", "127.0.0.1:0", "--server.loops", "2",
                             "--ws.handshake_timeout_ms", str(TIMEOUT_S * 1000), "--store.dir", os.path.join(d, "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ok = False
    try:
        for _ in range(1500):
            if os.path.exists(ready):
                break
            time.sleep(0.01)
        addr = json.load(open(ready))["ws"]
        csv = os.path.join(d, "slow")
        start = time.monotonic()
        out = subprocess.run(["slowhttptest", "-H", "-c", str(CONNECTIONS), "-i", "1", "-r", str(CONNECTIONS),
                              "-l", "20", "-p", "3", "-u", f"http://{addr}/ws", "-g", "-o", csv],
                             capture_output=True, text=True, timeout=60).stdout
        elapsed = time.monotonic() - start
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
        print(plain[-600:])
        rows = [l.split(",") for l in open(csv + ".csv").read().splitlines()[1:]]
        connected_peak = max(int(r[3]) for r in rows)
        assert connected_peak > CONNECTIONS // 2, f"slowhttptest connected only {connected_peak}"
        # Every slow connection was closed by the server long before slowhttptest's 20 s.
        assert "No open connections left" in plain, "connections stayed open"
        ended = int(re.search(r"Test ended on (\d+)th second", plain).group(1))
        assert ended <= TIMEOUT_S + 2, f"closed only at second {ended}"
        assert elapsed < 15, elapsed
        # Service stayed available: slowhttptest's own probe, and a real client now.
        assert all(r[4] != "0" for r in rows), "slowhttptest saw the service unavailable"
        asyncio.run(still_serves(addr))
        ok = True
        print(f"ok: {connected_peak} slow upgrades closed by second {ended}; service available")
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=10)
        if not ok:
            print(log.decode(errors="replace")[-3000:])


main()
