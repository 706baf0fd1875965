"""notify through the real daemon: incident_escalation asks, notify delivers to loopback receivers.

The receivers (notify_http_receiver.py, notify_smtp_sink.py) are started here on
127.0.0.1 and record what they got; the tests check what a receiver would care
about: each notification arrives, once, signed, and the journal says so.
"""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import Daemon, main

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "integration-secret"


class Receiver:
    """One of the loopback receivers, as a subprocess; use as a context manager."""

    def __init__(self, script, *args):
        self.dir = tempfile.mkdtemp(prefix="notify-rx-")
        self.log_path = os.path.join(self.dir, "log")
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, script), "--port-file",
                                      port_file, "--log", self.log_path] + list(args))
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.__exit__()
                raise RuntimeError("%s did not start" % script)
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def records(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def key_of(record):
    return record["headers"].get("x-safecampus-notification")


def config(smtp_port=None, channels=("webhook",)):
    smtp = 'smtp_url = "smtp://127.0.0.1:%d"; smtp_from = "safety@lakeside.example";' % smtp_port \
        if smtp_port else ""
    return """
notify: { secret = "%s"; timeout = 5; %s };
incident_escalation: { channels = [ %s ]; };
""" % (SECRET, smtp, ", ".join('"%s"' % c for c in channels))


def report_incident(d, incident="inc-1", school="sch-001"):
    d.ok("incident.reported", {"incident": incident, "kind": "injury", "severity": "III",
                               "location": "playground", "summary": "a pupil fell from the climbing frame"},
         school=school)


def data(row):
    return row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])


def test_delivered_by_webhook_and_email():
    with Receiver("notify_http_receiver.py", "--secret", SECRET) as web, \
            Receiver("notify_smtp_sink.py") as sink:
        url = "http://127.0.0.1:%d/hook" % web.port
        with Daemon("notify-deliver", plugins=["incident_escalation", "notify"],
                    config=config(sink.port, ("webhook", "email"))) as d:
            d.directory(webhook=url)
            report_incident(d)
            d.sync()

            requested = {data(r)["notification"]: data(r) for r in d.events("notification.requested")}
            assert requested, "incident_escalation asked for no notification"
            delivered = [data(r) for r in d.events("notification.delivered")]
            assert sorted(x["notification"] for x in delivered) == sorted(requested), \
                (delivered, requested)
            assert not d.events("notification.failed")
            # The delivered events carry the school and come from notify.
            rows = d.events("notification.delivered")
            assert {r["source"] for r in rows} == {"notify"} and {r["school"] for r in rows} == {"sch-001"}

            hooks = web.records()
            want_hooks = sorted(n for n, x in requested.items() if x["channel"] == "webhook")
            assert sorted(key_of(r) for r in hooks) == want_hooks, hooks
            for r in hooks:
                assert r["status"] == 200 and r["signature_ok"], r
                body = json.loads(r["body"])
                req = requested[body["notification"]]
                assert body["person"] == req["person"] and body["subject"] == req["subject"], body
                assert r["headers"]["idempotency-key"] == body["notification"]
                want = "sha256=" + hmac.new(SECRET.encode(), r["body"].encode(), hashlib.sha256).hexdigest()
                assert r["headers"]["x-safecampus-signature"] == want

            mails = sink.records()
            want_mails = sorted(n for n, x in requested.items() if x["channel"] == "email")
            assert sorted(m["headers"]["x-safecampus-notification"] for m in mails) == want_mails, mails
            for m in mails:
                req = requested[m["headers"]["x-safecampus-notification"]]
                assert m["rcpt"] == ["%s@school.example" % req["person"]], m
                assert m["subject"] == req["subject"] and m["body"] == req["body"], m

            # The delivery log, over the control socket and through safecampusctl.
            some = want_hooks[0]
            log = d.query("notify", "log", notification=some)
            assert log["notification"]["status"] == "delivered", log
            assert [a["ok"] for a in log["attempts"]] == [True], log
            out = d.ctl("query", "notify", "outbox", "status=delivered")
            assert out.returncode == 0, out.stderr
            reply = json.loads(out.stdout)
            assert len(reply["notifications"]) == len(requested), reply
            assert reply["counts"]["webhook"]["delivered"] == len(want_hooks), reply


def test_receiver_down_then_up_across_a_restart():
    # Two people on level 1, one webhook each: the first six requests fail (three
    # attempts each, at 0 s, 30 s and 90 s), with a kill -9 and restart in between.
    with Receiver("notify_http_receiver.py", "--fail-first", "6") as web:
        url = "http://127.0.0.1:%d/hook" % web.port
        with Daemon("notify-recover", plugins=["incident_escalation", "notify"],
                    config=config()) as d:
            d.directory(webhook=url)
            report_incident(d)
            d.sync()
            requested = sorted(data(r)["notification"] for r in d.events("notification.requested"))
            assert len(requested) == 2, requested
            pending = d.query("notify", "outbox", status="pending")
            assert pending["counts"]["webhook"]["pending"] == 2, pending
            d.advance(30)
            d.kill()
            d.start()
            d.advance(60)
            assert not d.events("notification.delivered")
            d.advance(120)

            records = web.records()
            assert len(records) == 8, records
            for n in requested:
                assert sum(1 for r in records if key_of(r) == n and r["status"] == 200) == 1, n
                assert sum(1 for r in records if key_of(r) == n) == 4, n
            assert {key_of(r) for r in records} == set(requested)
            delivered = sorted(data(r)["notification"] for r in d.events("notification.delivered"))
            assert delivered == requested, delivered
            assert all(data(r)["attempts"] == 4 for r in d.events("notification.delivered"))
            assert not d.events("notification.failed")
            log = d.query("notify", "log", notification=requested[0])
            assert [a["ok"] for a in log["attempts"]] == [False, False, False, True], log
            assert log["attempts"][0]["error"] == "HTTP 503", log


def test_no_usable_contact_is_reported_and_the_level_above_told():
    with Receiver("notify_http_receiver.py") as web:
        url = "http://127.0.0.1:%d/hook" % web.port
        with Daemon("notify-nocontact", plugins=["incident_escalation", "notify"],
                    config=config()) as d:
            d.directory(webhook=url)
            # Level 1 (safety officer, principal) have webhooks notify will not post to.
            for code, name, roles in [("p-safety", "Li Qiang", ["safety_officer", "teacher"]),
                                      ("p-principal", "Wang Fang", ["principal"])]:
                d.ok("directory.person.upserted", {"person": code, "name": name, "roles": roles,
                                                   "contacts": {"webhook": "ftp://files.example/drop"}})
            report_incident(d)
            d.sync()
            failed = [data(r) for r in d.events("notification.failed")]
            assert sorted(f["person"] for f in failed) == ["p-principal", "p-safety"], failed
            for f in failed:
                assert f["reason"] == "no usable contact" and f["attempts"] == 0, f
                assert f["detail"] == "person %s has no usable webhook contact" % f["person"], f
            # incident_escalation saw the failures and told level 2, whose webhook is called.
            delivered = [data(r) for r in d.events("notification.delivered")]
            assert [x["person"] for x in delivered] == ["d-safety"], delivered
            assert [key_of(r) for r in web.records()] == [delivered[0]["notification"]]
            figures = d.query("notify", "figures", school="sch-001",
                              **{"from": "2026-06-01", "to": "2026-06-30"})
            assert figures["no_contact"] == 2 and figures["delivered"] == 1, figures


def test_channel_not_configured_is_reported():
    with Receiver("notify_http_receiver.py") as web:
        with Daemon("notify-unconfigured", plugins=["incident_escalation", "notify"],
                    config=config(channels=("email",))) as d:
            d.directory()  # everyone has e-mail, but notify has no mail server
            report_incident(d)
            d.sync()
            requested = {data(r)["notification"] for r in d.events("notification.requested")}
            failed = [data(r) for r in d.events("notification.failed")]
            assert requested and {f["notification"] for f in failed} == requested, (requested, failed)
            assert {f["reason"] for f in failed} == {"channel not configured"}, failed
            assert not web.records() and not d.events("notification.delivered")


if __name__ == "__main__":
    main(globals())
