#!/usr/bin/env python3
"""Post a week of service-to-service calls (400 pairs of 50 services, one trace per pair
and hour, as Zipkin JSON) to ZIPKIN_ADDR, for timing /api/dependencies over a week:
  python3 scripts/deps_week.py ZIPKIN_HOST:PORT QUERY_HOST:PORT
The daemon needs --retention 720h so the oldest hours are kept."""
import json, sys, time, urllib.request
z, q = sys.argv[1], sys.argv[2]
now = int(time.time() * 1e6)
pairs = [(f"svc-{i}", f"svc-{(i * 7 + j) % 50}") for i in range(50) for j in range(1, 9)]  # 400 pairs
tid = 1
for h in range(168):
    spans = []
    t = now - (h * 3600 + 60) * 1_000_000
    for (p, c) in pairs:
        spans.append({"traceId": f"{tid:x}", "id": "1", "name": "call", "timestamp": t, "duration": 10, "localEndpoint": {"serviceName": p}})
        spans.append({"traceId": f"{tid:x}", "id": "2", "parentId": "1", "name": "serve", "timestamp": t + 1, "duration": 5, "localEndpoint": {"serviceName": c}})
        tid += 1
    req = urllib.request.Request(f"http://{z}/api/v2/spans", data=json.dumps(spans).encode(), headers={"content-type": "application/json"})
    assert urllib.request.urlopen(req).status == 202
print("posted", tid - 1, "traces")
