"""incident_escalation through the real daemon: the school chain and the district on a manual clock,
acknowledgement, resolution, report deadlines, alerts from hazard_tracker, drills and silences,
timers across a restart, queries over the control socket."""

import json
import signal
import time

from harness import Daemon, main

PLUGIN = "incident_escalation"

# The harness clock starts at 2026-06-15T07:00:00+08:00 (23:00Z the day before).
T0 = "2026-06-14T23:00:00Z"


def wait_for(cond, seconds=10):
    deadline = time.time() + seconds
    while not cond():
        assert time.time() < deadline, "not within %d s" % seconds
        time.sleep(0.05)


def data(row):
    return row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])


def emitted(d, type, after=0):
    """Events of `type` the plugin raised, in journal order (after a sync)."""
    d.sync()
    return [e for e in d.events(type, after=after) if e["source"] == PLUGIN]


def escalated(d, after=0):
    return [data(e) for e in emitted(d, "incident.escalated", after)]


def notified(d, after=0):
    return [data(e)["person"] for e in emitted(d, "notification.requested", after)]


def utc(ts):
    return ts.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(d, code, kind="injury", severity="III", **extra):
    body = {"incident": code, "kind": kind, "severity": severity, "location": "playground",
            "summary": "a pupil fell from the climbing frame"}
    body.update(extra)
    return d.ok("incident.reported", body, actor="t-101")


def last_event(d):
    rows = d.sql("SELECT coalesce(max(id), 0) AS id FROM core.events")
    return rows[0]["id"]


def test_school_chain_climbs_until_acknowledged():
    with Daemon("ie-climb", plugins=[PLUGIN]) as d:
        d.directory()
        report(d, "inc-1")
        steps = escalated(d)
        assert [(s["level"], s["cause"]) for s in steps] == [(1, "start")], steps
        assert sorted(steps[0]["targets"]) == ["p-principal", "p-safety"], steps
        # One notification per person and channel (the directory gives e-mail and phone).
        assert sorted(notified(d)) == ["p-principal", "p-principal", "p-safety", "p-safety"]
        assert "d-safety" not in notified(d)

        d.advance(15 * 60)
        rows = [e for e in emitted(d, "incident.escalated") if data(e)["level"] == 2]
        assert len(rows) == 1 and data(rows[0])["cause"] == "timeout", rows
        assert utc(rows[0]["occurred_at"]) == "2026-06-14T23:15:00Z", rows
        assert data(rows[0])["targets"] == ["d-safety"], rows
        assert rows[0]["school"] == "sch-001"

        # The school doctor holds no role of a told level; the district office does.
        ev = d.ok("incident.acknowledged", {"incident": "inc-1", "by": "p-doctor"})
        rej = [data(e) for e in emitted(d, "incident.rejected") if data(e)["event"] == ev]
        assert len(rej) == 1 and "holds no role" in rej[0]["reason"], rej
        d.ok("incident.acknowledged", {"incident": "inc-1", "by": "d-safety"})
        d.sync()
        mark = last_event(d)
        d.advance(6 * 3600)
        assert escalated(d, after=mark) == [], "the climb went on after the acknowledgement"

        open_ = d.query(PLUGIN, "open", school="sch-001")
        assert open_["ok"], open_
        [inc] = open_["open"]
        assert inc["code"] == "inc-1" and inc["status"] == "acknowledged" and inc["level"] == 2, inc
        assert inc["unacknowledged"] == [], inc

        d.ok("incident.resolved", {"incident": "inc-1", "by": "p-principal",
                                   "summary": "first aid given, parents informed"})
        d.sync()
        assert d.query(PLUGIN, "open", district="dist-01")["open"] == []
        tl = d.query(PLUGIN, "timeline", incident="inc-1")
        whats = [x["what"] for x in tl["timeline"]]
        assert whats[0] == "reported" and whats[-1] == "notified", whats
        assert whats.index("acknowledged") < whats.index("resolved"), whats
        assert tl["incident"]["resolved_by"] == "p-principal", tl


def test_grave_incident_tells_district_at_once_and_chases_the_report():
    with Daemon("ie-grave", plugins=[PLUGIN]) as d:
        d.directory()
        report(d, "inc-9", kind="drowning", severity="II", casualties={"dead": 0, "injured": 1},
               **{"class": "c-1a"})
        steps = escalated(d)
        assert sorted((s["level"], s["cause"]) for s in steps) == [(1, "start"), (2, "immediate")]
        assert "d-safety" in notified(d) and "d-director" not in notified(d)

        d.advance(2 * 3600)  # at the deadline itself the report is not late yet
        assert emitted(d, "incident.report.overdue") == []
        d.advance(1)
        [late] = emitted(d, "incident.report.overdue")
        assert data(late)["incident"] == "inc-9" and data(late)["chase"] == 1, late
        assert utc(late["occurred_at"]) == "2026-06-15T01:00:01Z", late

        d.ok("incident.report.submitted", {"incident": "inc-9", "by": "p-principal",
                                           "summary": "written report", "document": "doc-77"})
        d.advance(3 * 3600)
        assert len(emitted(d, "incident.report.overdue")) == 1
        assert d.query(PLUGIN, "reports", school="sch-001")["reports"] == []

        f = d.query(PLUGIN, "figures", school="sch-001", **{"from": "2026-06-15", "to": "2026-06-15"})
        assert f["ok"] and f["incidents"] == 1 and f["incidents_by_kind"] == {"drowning": 1}, f
        assert f["reports_required"] == 1 and f["reports_late"] == 1, f


def test_overdue_hazard_is_escalated_grouped_and_resolved():
    with Daemon("ie-hazard", plugins=[PLUGIN, "hazard_tracker"]) as d:
        d.directory()
        d.ok("hazard.reported", {"hazard": "hz-1", "title": "loose handrail", "risk": "general",
                                 "location": "stair B", "category": "building"}, actor="p-safety")
        d.advance(9 * 86400)  # past the deadline (end of 06-22), then a daily reminder
        overdue = [e for e in d.events("hazard.overdue")]
        reminders = [e for e in d.events("hazard.reminder")]
        assert len(overdue) == 1 and reminders, (overdue, reminders)
        alerts = d.query(PLUGIN, "open", sort="alert")["open"]
        assert len(alerts) == 1, alerts
        [a] = alerts
        assert a["type"] == "hazard.overdue" and a["subject"] == "hz-1", a
        assert a["count"] == 1 + len(reminders), a
        starts = [s for s in escalated(d) if s["cause"] == "start"]
        assert len(starts) == 1 and starts[0]["alert"] == a["code"], starts

        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"}, actor="p-safety")
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        d.sync()
        assert d.query(PLUGIN, "open", sort="alert")["open"] == []


def test_reads_only_the_types_its_policies_name():
    """Gate entries are no alert under the built-in policies: the daemon never reads them for
    the plugin, whose cursor still moves past them; a visitor overstaying still escalates."""
    with Daemon("ie-subscribe", plugins=[PLUGIN, "ledger"]) as d:
        d.directory()
        subs = d.plugin(PLUGIN)["subscribe"]
        assert "gate.overstay" in subs and "gate.exit" in subs and "gate." not in subs, subs
        assert "hazard." not in subs and "hazard.overdue" in subs, subs
        before = d.plugin(PLUGIN)["handled"]
        for i in range(40):
            d.ok("gate.entry", {"kind": "pupil", "card": "c-%d" % i}, source="cards")
        d.ok("gate.entry", {"visit": "v-1", "name": "Zhao", "host": "p-safety"}, source="gate",
             occurred_at="2026-06-15T07:10:00+08:00")
        d.sync()
        p = d.plugin(PLUGIN)
        assert p["handled"] == before and p["lag"] == 0, p
        d.set_time("2026-06-15T18:01:00+08:00")
        alerts = d.query(PLUGIN, "open", sort="alert")["open"]
        assert [(a["type"], a["subject"]) for a in alerts] == [("gate.overstay", "v-1")], alerts

        # A reload with a policy on any event of a major risk (no type named): the whole list
        # again; and back to the built-ins alone, the narrow one.
        d.write_config('incident_escalation: { policies = ({ name = "major"; match = { risk = '
                       '"major"; }; }); };')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "gate." in d.plugin(PLUGIN)["subscribe"])
        d.write_config("")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "gate." not in d.plugin(PLUGIN)["subscribe"])
        assert "gate.overstay" in d.plugin(PLUGIN)["subscribe"]


def test_drill_inhibits_alarms_and_silences_expire():
    with Daemon("ie-drill", plugins=[PLUGIN, "ledger"]) as d:
        d.directory()
        d.ok("drill.started", {"drill": "dr-1", "kind": "fire"})
        d.ok("fire.alarm", {"panel": "fp-1", "zone": "B2", "kind": "alarm"})
        d.sync()
        assert escalated(d) == []
        d.advance(20 * 60)
        d.ok("drill.ended", {"drill": "dr-1"})
        d.ok("fire.alarm", {"panel": "fp-1", "zone": "B2", "kind": "alarm"})
        steps = escalated(d)
        assert len(steps) == 1 and steps[0]["incident"].startswith("fire-"), steps

        mark = last_event(d)
        d.ok("silence.created", {"silence": "s-1", "ends_at": "2026-06-15T08:30:00+08:00",
                                 "matcher": {"type": "fire.alarm"}, "reason": "panel maintenance",
                                 "by": "p2-safety"}, school="sch-002")
        d.ok("fire.alarm", {"panel": "fp-9", "zone": "1", "kind": "alarm"}, school="sch-002")
        d.sync()
        assert [s for s in escalated(d, after=mark) if s["level"] == 1 and s["cause"] == "start"] == []
        d.set_time("2026-06-15T08:30:00+08:00")
        [expired] = emitted(d, "silence.expired")
        assert data(expired)["silence"] == "s-1" and data(expired)["suppressed"] == 1, expired
        assert utc(expired["occurred_at"]) == "2026-06-15T00:30:00Z", expired
        d.ok("fire.alarm", {"panel": "fp-9", "zone": "1", "kind": "alarm"}, school="sch-002")
        starts = [s for s in escalated(d, after=mark) if s["cause"] == "start"]
        assert len(starts) == 1 and "p2-safety" in starts[0]["targets"], starts

        ledger = d.query(PLUGIN, "ledger", school="sch-001", **{"from": "2026-06-01", "to": "2026-06-30"})
        sections = {s["key"]: s for s in ledger["sections"]}
        assert len(sections["incidents"]["rows"]) == 1, sections
        [row] = sections["alarms_not_escalated"]["rows"]
        assert row[1] == "fire.alarm" and row[2] == "drill" and row[3] == "dr-1", row


def test_timers_survive_a_restart():
    with Daemon("ie-restart", plugins=[PLUGIN]) as d:
        d.directory()
        report(d, "inc-r")
        d.advance(10 * 60)
        d.kill()
        d.start()
        d.advance(5 * 60)
        steps = [s for s in escalated(d) if s["level"] == 2]
        assert len(steps) == 1 and steps[0]["cause"] == "timeout", steps
        # Nothing was told twice: one first notice per person and channel at level 1.
        firsts = [data(e) for e in emitted(d, "notification.requested")
                  if data(e)["purpose"] == "escalation" and data(e)["level"] == 1]
        assert len(firsts) == len({(x["person"], x["channel"]) for x in firsts}) == 4, firsts


def test_bad_events_are_refused():
    with Daemon("ie-refuse", plugins=[PLUGIN]) as d:
        d.directory()
        r = d.send("incident.reported", {"incident": "x", "kind": "meteor", "severity": "II"})
        assert not r["ok"] and r["error"] == "invalid_event", r
        assert r["detail"].startswith("data.kind: must be one of"), r
        r = d.send("incident.escalated", {"incident": "x", "level": 1, "targets": [], "reason": "r"})
        assert not r["ok"], r
        bad = d.query(PLUGIN, "everything")
        assert not bad["ok"] and bad["error"].startswith("what: must be one of"), bad


if __name__ == "__main__":
    main(globals())
