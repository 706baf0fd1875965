#!/usr/bin/env python3
"""A loopback SMTP sink for the notify tests: accepts mail, records each message, fails on demand.

    notify_smtp_sink.py --port-file F --log L [--fail-first N] [--fail-code 451]

A small hand-written ESMTP server (socketserver; smtpd is gone from newer
Pythons). Listens on 127.0.0.1 (a free port, written to --port-file once
listening). Each message received after DATA is appended to --log as one JSON
line before the reply: {"n", "mail_from", "rcpt", "status", "headers" (lower-case
names, decoded), "subject", "body" (decoded text)}. The first N messages (all
when N < 0) are answered with --fail-code (451: try again later, 550: refused)
instead of 250.
"""
import argparse
import email
import email.policy
import json
import os
import re
import socketserver
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-code", type=int, default=451)
    args = ap.parse_args()

    lock = threading.Lock()
    state = {"n": 0}
    log = open(args.log, "a", encoding="utf-8")
    addr_re = re.compile(r"^(?:MAIL FROM|RCPT TO):\s*<([^>]*)>", re.I)

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text):
            self.wfile.write((text + "\r\n").encode())
            self.wfile.flush()

        def read_data(self):
            lines = []
            while True:
                line = self.rfile.readline()
                if not line:
                    return None
                if line in (b".\r\n", b".\n"):
                    return b"".join(lines)
                if line.startswith(b".."):
                    line = line[1:]  # undo dot-stuffing
                lines.append(line)

        def record(self, mail_from, rcpt, raw):
            with lock:
                n = state["n"]
                state["n"] += 1
            failing = args.fail_first < 0 or n < args.fail_first
            status = args.fail_code if failing else 250
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            body = msg.get_body(preferencelist=("plain",))
            rec = {
                "n": n,
                "mail_from": mail_from,
                "rcpt": rcpt,
                "status": status,
                "headers": {k.lower(): str(v) for k, v in msg.items()},
                "subject": str(msg["subject"] or ""),
                "body": body.get_content() if body is not None else "",
            }
            with lock:
                log.write(json.dumps(rec, ensure_ascii=False) + "\n")
                log.flush()
            return status

        def handle(self):
            self.reply("220 notify-sink ESMTP")
            mail_from, rcpt = None, []
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-notify-sink\r\n250-8BITMIME\r\n250 SIZE 10000000")
                elif verb == "HELO":
                    self.reply("250 notify-sink")
                elif verb == "MAIL":
                    m = addr_re.match(cmd)
                    if not m:
                        self.reply("501 syntax: MAIL FROM:<address>")
                        continue
                    mail_from, rcpt = m.group(1), []
                    self.reply("250 ok")
                elif verb == "RCPT":
                    m = addr_re.match(cmd)
                    if not m or mail_from is None:
                        self.reply("503 need MAIL before RCPT")
                        continue
                    rcpt.append(m.group(1))
                    self.reply("250 ok")
                elif verb == "DATA":
                    if not rcpt:
                        self.reply("503 need RCPT before DATA")
                        continue
                    self.reply("354 end with <CRLF>.<CRLF>")
                    raw = self.read_data()
                    if raw is None:
                        return
                    status = self.record(mail_from, rcpt, raw)
                    self.reply("250 queued" if status == 250 else
                               f"{status} {'try again later' if status < 500 else 'refused'}")
                    mail_from, rcpt = None, []
                elif verb == "RSET":
                    mail_from, rcpt = None, []
                    self.reply("250 ok")
                elif verb == "NOOP":
                    self.reply("250 ok")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 command not implemented")

    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
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
