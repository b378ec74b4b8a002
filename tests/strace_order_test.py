#!/usr/bin/python3
"""Ordering proof (TESTING.md "Durability"): runs heraldd under strace and checks that
every acknowledgement of a durable publish (the API's "HTTP/1.1 200" write) comes after
an fsync/fdatasync that completed after the request was read, i.e. after the commit of
the transaction holding it was synced. Usage: strace_order_test.py HERALDD"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

N = 20


def main():
    heraldd = sys.argv[1]
    d = tempfile.mkdtemp(prefix="herald-strace-")
    trace = os.path.join(d, "trace")
    ready = os.path.join(d, "ready.json")
    server_pid = None
    proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-s", "48", "-o", trace,
         "-e", "trace=fdatasync,fsync,read,readv,recvfrom,write,writev,sendmsg,sendto",
         heraldd, "--store.dir", os.path.join(d, "data"), "--listen.tcp", "127.0.0.1:0",
         "--listen.api", "127.0.0.1:0", "--listen.ws", "127.0.0.1:0", "--ready-file", ready,
         "--server.loops", "1"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "heraldd.log"), "w"))
    try:
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if time.time() > deadline or proc.poll() is not None:
                print("heraldd did not start under strace:\n" + open(os.path.join(d, "heraldd.log")).read())
                return 1
            time.sleep(0.05)
        info = json.load(open(ready))
        host, port = info["api"].rsplit(":", 1)
        server_pid = info["pid"]
        for i in range(N):
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            body = json.dumps({"channel": "user:strace", "message_id": "s-%d" % i, "payload": i})
            c.request("POST", "/v1/publish", body, {"Authorization": "Bearer herald-dev-api-key"})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                print("publish %d answered %d" % (i, r.status))
                return 1
    finally:
        # Stop heraldd itself (strace would detach on a signal and leave it running).
        if server_pid is not None:
            os.kill(server_pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(server_pid, signal.SIGKILL)
            proc.wait(timeout=10)

    # Walk the trace in order. A syscall counts where it completes (strace -f prints
    # "<unfinished ...>" and "<... x resumed>" for calls that overlap other threads).
    synced = 0          # completed syncs so far
    pending = None      # sync count when the current request was read
    proved = 0
    sync_re = re.compile(r"(fdatasync|fsync)\(")
    for line in open(trace):
        if "unfinished" in line:
            continue
        if sync_re.search(line) or re.search(r"<\.\.\. (fdatasync|fsync) resumed>", line):
            if re.search(r"= 0\s*$", line):
                synced += 1
            continue
        if "POST /v1/publish" in line:
            pending = synced
            continue
        if "HTTP/1.1 200" in line and pending is not None:
            if synced <= pending:
                print("acknowledgement written before any sync after its request:\n" + line)
                return 1
            proved += 1
            pending = None
    shutil.rmtree(d, ignore_errors=True)
    if proved != N:
        print("found %d of %d acknowledgements in the trace" % (proved, N))
        return 1
    print("ok: %d acknowledgements, each after a completed sync (%d syncs)" % (proved, synced))
    return 0


if __name__ == "__main__":
    sys.exit(main())
