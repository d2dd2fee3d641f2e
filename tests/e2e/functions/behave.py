"""A stdlib-only function for the gateway tests: the event says how to behave.

ok -> 200; crash -> 500; notfound -> 200 with x-fc-status: 404; slow -> 200 after
0.25 s; hold:PATH -> creates PATH.started, then answers once PATH.release exists (at
most 30 s); sleep -> sleeps 30 s;
oom -> holds 400 MB; headers -> echoes the request headers as JSON. POST /initialize
answers 200 after a short pause.
"""
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

hold = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, extra=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        event = self.rfile.read(n).decode() if n else ""
        if self.path == "/initialize":
            time.sleep(0.03)
            return self.reply(200, {"initialized": True})
        if event == "crash":
            return self.reply(500, {"error": "boom"})
        if event == "notfound":
            return self.reply(200, {"error": "no such thing"}, [("x-fc-status", "404")])
        if event.startswith("hold:"):
            path = event[len("hold:"):]
            open(path + ".started", "w").close()
            deadline = time.time() + 30
            while not os.path.exists(path + ".release") and time.time() < deadline:
                time.sleep(0.01)
        if event == "slow":
            time.sleep(0.25)
        if event == "sleep":
            time.sleep(30)
        if event == "oom":
            hold.append(bytearray(400 * 1024 * 1024))
            for i in range(0, len(hold[-1]), 4096):
                hold[-1][i] = 1
            time.sleep(30)
        if event == "headers":
            return self.reply(200, {k.lower(): v for k, v in self.headers.items()})
        self.reply(200, {"pid": os.getpid(), "event": event})


ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), Handler).serve_forever()
