"""The demo's caller: invokes the example functions through fctrace's gateway in a loop,
as an upstream service would, with its own span context and baggage.

Usage: caller.py GATEWAY_URL [SECONDS]   (stdlib only; runs until Ctrl-C without SECONDS)
"""
import random
import sys
import time
import urllib.error
import urllib.request

gateway = sys.argv[1].rstrip("/")
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else None
functions = [("demo", "python"), ("demo", "node")]
deadline = time.time() + seconds if seconds else None
n = 0
while deadline is None or time.time() < deadline:
    service, function = functions[n % len(functions)]
    n += 1
    trace_id = "%016x" % random.getrandbits(64)
    span_id = "%016x" % random.getrandbits(64)
    req = urllib.request.Request(
        f"{gateway}/2016-08-15/services/{service}/functions/{function}/invocations",
        data=b'{"order": %d}' % n,
        headers={
            "Content-Type": "application/json",
            # the caller's own span: InvokeFunction becomes its child, sampled
            "x-fc-tracing-opentracing-span-context": f"{trace_id}:{span_id}:0:1",
            "x-fc-tracing-opentracing-span-context-baggage-user": "demo-user",
            "x-fc-tracing-opentracing-span-context-baggage-order": str(n),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            print(f"{function}: {r.status} request {r.headers.get('x-fc-request-id')} "
                  f"{r.headers.get('x-fc-invocation-duration')} ms trace {trace_id}", flush=True)
    except urllib.error.HTTPError as e:
        print(f"{function}: {e.code} {e.read()[:200]!r}", flush=True)
    except OSError as e:
        print(f"{function}: {e}", flush=True)
    time.sleep(0.5)
