#!/usr/bin/python3
"""TLS scan of the real heraldd with sslscan and testssl (TESTING.md "TLS").

Makes a development certificate with the documented command, starts heraldd with a
TLS listener on port 0, and checks that both scanners see only TLS 1.2 and 1.3, only
Mozilla "intermediate" cipher suites, and only its key exchange groups.
Usage: tls_scan.py HERALDD_PATH
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Mozilla intermediate: TLS 1.3 suites, and ECDHE/DHE with AES-GCM or ChaCha20 for TLS 1.2.
ALLOWED_CIPHERS = {
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}
ALLOWED_GROUPS = {"x25519", "secp256r1", "secp384r1"}
DEV_CERT = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
            "-keyout dev-key.pem -out dev-cert.pem -subj /CN=localhost "
            "-addext subjectAltName=DNS:localhost,IP:127.0.0.1")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def start_server(heraldd, work):
    ready = os.path.join(work, "ready.json")
    log = open(os.path.join(work, "heraldd.log"), "w")
    proc = subprocess.Popen([heraldd, "--listen.tcp", "127.0.0.1:0", "--listen.api", "127.0.0.1:0",
                             "--listen.ws", "127.0.0.1:0",
                             "--listen.tls", "127.0.0.1:0", "--tls.cert_file", "dev-cert.pem",
                             "--tls.key_file", "dev-key.pem", "--ready-file", ready,
                             "--protocol.handshake_timeout_ms", "30000", "--store.dir", os.path.join(work, "data")],
                            cwd=work, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        if os.path.exists(ready):
            try:
                with open(ready) as f:
                    return proc, json.load(f)["tls"]
            except (ValueError, KeyError):
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit("heraldd did not start:\n" + open(os.path.join(work, "heraldd.log")).read())


def scan_sslscan(address):
    out = subprocess.run(["sslscan", "--no-colour", address], capture_output=True, text=True, timeout=120).stdout
    protocols = dict(re.findall(r"^(SSLv2|SSLv3|TLSv1\.[0-3])\s+(enabled|disabled)", out, re.M))
    check(protocols == {"SSLv2": "disabled", "SSLv3": "disabled", "TLSv1.0": "disabled", "TLSv1.1": "disabled",
                        "TLSv1.2": "enabled", "TLSv1.3": "enabled"}, f"sslscan protocols {protocols}")
    ciphers = set(re.findall(r"^(?:Preferred|Accepted)\s+TLSv1\.[23]\s+\d+ bits\s+(\S+)", out, re.M))
    check(len(ciphers) >= 3, f"sslscan found cipher suites {sorted(ciphers)}")
    check(ciphers <= ALLOWED_CIPHERS, f"sslscan: only intermediate suites (extra: {sorted(ciphers - ALLOWED_CIPHERS)})")
    groups = set(re.findall(r"^TLSv1\.[23]\s+\d+ bits\s+(\S+)", out, re.M))
    check(groups and groups <= ALLOWED_GROUPS, f"sslscan: key exchange groups {sorted(groups)}")
    check("renegotiation not supported" in out, "sslscan: no renegotiation")


def scan_testssl(address, work):
    report = os.path.join(work, "testssl.json")
    subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "-p", "-e",
                    "--jsonfile", report, address], capture_output=True, text=True, timeout=600)
    with open(report) as f:
        findings = json.load(f)
    by_id = {x["id"]: x["finding"] for x in findings}
    for pid, want in [("SSLv2", "not offered"), ("SSLv3", "not offered"), ("TLS1", "not offered"),
                      ("TLS1_1", "not offered"), ("TLS1_2", "offered"), ("TLS1_3", "offered")]:
        got = by_id.get(pid, "missing")
        check(got == want or (want == "offered" and got.startswith("offered")), f"testssl {pid}: {got}")
    ciphers = set()
    for x in findings:
        if x["id"].startswith("cipher-") or x["id"].startswith("cipher_x"):
            # e.g. "TLS 1.3  x1302 TLS_AES_256_GCM_SHA384 ECDH 253 AESGCM 256 TLS_AES_256_GCM_SHA384"
            parts = x["finding"].split()
            names = [p for p in parts if "_" in p or "-" in p]
            if names:
                ciphers.add(names[0])
    check(len(ciphers) >= 3, f"testssl found cipher suites {sorted(ciphers)}")
    check(ciphers <= ALLOWED_CIPHERS, f"testssl: only intermediate suites (extra: {sorted(ciphers - ALLOWED_CIPHERS)})")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for tool in ("sslscan", "testssl", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (.ci/install-deps.sh installs it)")
    work = tempfile.mkdtemp(prefix="herald-tls-scan-")
    try:
        subprocess.run(DEV_CERT, shell=True, cwd=work, check=True, capture_output=True)
        proc, address = start_server(os.path.abspath(sys.argv[1]), work)
        try:
            scan_sslscan(address)
            scan_testssl(address, work)
            check(proc.poll() is None, "heraldd still running after both scans")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(f"{len(failures)} TLS scan check(s) failed")


if __name__ == "__main__":
    main()
