#!/usr/bin/env python3
"""The hostile cases of RELIABILITY.md, measured against a running fctrace.

    scripts/hostile.py COLLECTOR_URL QUERY_URL PID

Sends each body the way a hostile or unusual client would and prints, per case, the
answer, the time it took, the daemon's CPU seconds (counted until 1.5 s after the
answer, so the flush a body causes is its own) and its peak RSS growth (VmHWM from
/proc). The two CPU cases run three times each. Start the daemon with
--max-spans-per-request 1000000 --retention 720h so the CPU cases are not refused by the
span cap or as older than retention.
"""
import os
import struct
import sys
import threading
import time
import urllib.error
import urllib.request

COLLECTOR, QUERY, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])


def hwm():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM")


def post(body, ct="application/x-thrift"):
    req = urllib.request.Request(f"{COLLECTOR}/api/traces", data=body, headers={"Content-Type": ct})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def field(ty, fid):
    return struct.pack(">bh", ty, fid)


def process(service=b"hostile"):
    return field(12, 1) + field(11, 1) + struct.pack(">i", len(service)) + service + b"\0"


def empty_spans(n):
    return process() + field(15, 2) + struct.pack(">bi", 12, n) + b"\0" * n + b"\0"


def span(trace, sid, start):
    out = b""
    for fid, v in ((1, trace), (2, 0), (3, sid), (8, start), (9, 5)):
        out += field(10, fid) + struct.pack(">q", v)
    out += field(11, 5) + struct.pack(">i", 2) + b"op"
    return out + b"\0"


def spans_batch(n, start_of):
    body = [process(), field(15, 2), struct.pack(">bi", 12, n)]
    body += [span(1 + i // 10, 1 + i, start_of(i)) for i in range(n)]
    body.append(b"\0")
    return b"".join(body)


def cpu():
    """The daemon's CPU seconds so far (utime + stime)."""
    fields = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def case(name, fn):
    time.sleep(1.5)  # let the last case's flush finish, so its CPU is not counted here
    before, c0 = hwm(), cpu()
    t0 = time.monotonic()
    result = fn()
    took = time.monotonic() - t0
    time.sleep(1.5)  # and count the flush this one causes
    growth = (hwm() - before) / 2**20
    print(f"| {name} | {result} | {took:.2f} s | {cpu() - c0:.2f} s | {growth:.0f} MiB | {hwm() / 2**20:.0f} MiB |", flush=True)


print("| case | answer | time | daemon CPU | peak RSS growth | peak RSS |")
print("|---|---|---|---|---|---|")
hostile = empty_spans(20_000_000)
case("20M declared empty spans, 20 MB thrift", lambda: post(hostile)[0])


def eight():
    results = []
    threads = [threading.Thread(target=lambda: results.append(post(hostile)[0])) for _ in range(8)]
    for t in threads:
        t.start()
    health = 0
    while any(t.is_alive() for t in threads):
        with urllib.request.urlopen(f"{QUERY}/healthz", timeout=5) as r:
            health += r.status == 200
        time.sleep(0.05)
    for t in threads:
        t.join()
    return f"{sorted(results)}, /healthz answered {health} times meanwhile"


case("8 of those at once", eight)
now = int(time.time() * 1e6)
n = 300_000
same = spans_batch(n, lambda i: now - 1000)
# every span in a second of its own: 300,000 seconds, so run the daemon with --retention 720h
distinct = spans_batch(n, lambda i: now - (n - i) * 1_000_000)
print(f"\n({n} valid spans, {len(same) / 2**20:.1f} MiB per body)\n")
for r in range(3):
    case("valid spans, all in one second", lambda: post(same)[0])
    # start times a microsecond apart from the last round's
    distinct = spans_batch(n, lambda i: now - (n - i) * 1_000_000 - r)
    case("valid spans, each in its own second", lambda: post(distinct)[0])
