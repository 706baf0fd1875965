#!/usr/bin/env python3
"""A loopback HTTP receiver for the notify tests: records every request, fails on demand.

    notify_http_receiver.py --port-file F --log L [--fail-first N] [--fail-status 503]
                            [--fail-mode status|errcode|hang] [--secret S]

Listens on 127.0.0.1 (a free port, written to --port-file once listening) and
appends one JSON line per request to --log, written before the reply is sent:
{"n", "method", "path", "headers" (lower-case names), "body", "status",
"signature_ok" (null without --secret)}. The first N requests (all of them
when N < 0) fail: with --fail-status (mode "status"), with 200 and a chat
robot's {"errcode": 310000} (mode "errcode"), or by never answering in time
(mode "hang": the reply comes after --hang-seconds, recorded as status 0).
Other requests get 200 {"errcode": 0, "errmsg": "ok"}.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--fail-mode", choices=["status", "errcode", "hang"], default="status")
    ap.add_argument("--hang-seconds", type=float, default=30.0)
    ap.add_argument("--secret", default=None)
    args = ap.parse_args()

    lock = threading.Lock()
    state = {"n": 0}
    log = open(args.log, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet: the JSON log is the record
            pass

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with lock:
                n = state["n"]
                state["n"] += 1
            failing = args.fail_first < 0 or n < args.fail_first
            status, reply = 200, {"errcode": 0, "errmsg": "ok"}
            if failing and args.fail_mode == "status":
                status, reply = args.fail_status, {"error": "unavailable"}
            elif failing and args.fail_mode == "errcode":
                reply = {"errcode": 310000, "errmsg": "keywords not in content"}
            elif failing and args.fail_mode == "hang":
                status = 0
            sig_ok = None
            if args.secret is not None:
                want = "sha256=" + hmac.new(args.secret.encode(), raw, hashlib.sha256).hexdigest()
                sig_ok = hmac.compare_digest(want, self.headers.get("X-Safecampus-Signature", ""))
            record = {
                "n": n,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": raw.decode("utf-8", "replace"),
                "status": status,
                "signature_ok": sig_ok,
            }
            with lock:
                log.write(json.dumps(record, ensure_ascii=False) + "\n")
                log.flush()
            if status == 0:
                time.sleep(args.hang_seconds)
                status = 503
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _serve

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
