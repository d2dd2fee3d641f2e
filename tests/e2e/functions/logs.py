"""A stdlib function that prints, for the function-log tests.

say:WORD:N -> N lines "WORD line I" on stdout (20 ms apart), then "WORD warning" on
stderr; flood:N -> N lines of 100 bytes at once; long:N -> one line of N bytes; noline:N ->
N bytes and no newline. It prints "instance starting" when it
starts, outside any request. Output is unbuffered (the platform sets PYTHONUNBUFFERED).
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        event = self.rfile.read(n).decode() if n else ""
        kind, _, rest = event.partition(":")
        if kind == "say":
            word, _, count = rest.partition(":")
            for i in range(int(count)):
                print(f"{word} line {i}")
                time.sleep(0.02)
            print(f"{word} warning", file=sys.stderr)
        elif kind == "long":
            print("y" * int(rest))
        elif kind == "noline":
            sys.stdout.write("z" * int(rest))
            sys.stdout.flush()
        elif kind == "flood":
            for i in range(int(rest)):
                print(f"{i:05d} " + "x" * 94)
        data = json.dumps({"event": event}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


print("instance starting")
ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), Handler).serve_forever()
