#!/usr/bin/env python3
"""Send COUNT datagrams to a Jaeger agent port as fast as one socket can, then report
what the daemon counted and the CPU it spent (for RELIABILITY.md):
  python3 scripts/udp_flood.py DATA_DIR PORT_NAME COUNT [DATAGRAM_FILE]
PORT_NAME is agent_binary or agent_compact (read from DATA_DIR/ports.json). Without a
file, each datagram is 1,000 bytes of garbage."""
import json, os, socket, sys, time, urllib.request

data_dir, port_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ports = json.load(open(os.path.join(data_dir, "ports.json")))
host, port = ports[port_name].rsplit(":", 1)
payload = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else os.urandom(1000)
pid = int(ports["pid"])
ticks = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / ticks

def counted():
    text = urllib.request.urlopen(f"http://{ports['query']}/metrics").read().decode()
    return {l.split("{")[1].split("}")[0]: float(l.rsplit(" ", 1)[1])
            for l in text.splitlines() if l.startswith("fctrace_agent_datagrams_total{")}

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c0, t0 = cpu(), time.time()
for _ in range(count):
    s.sendto(payload, (host, int(port)))
sent = time.time() - t0
time.sleep(2)
c1 = cpu()
t = time.time()
urllib.request.urlopen(f"http://{ports['query']}/healthz").read()
print(json.dumps({"sent": count, "send_seconds": round(sent, 2), "daemon_cpu_seconds": round(c1 - c0, 2),
                  "healthz_ms": round((time.time() - t) * 1000, 1), "counted": counted()}))
