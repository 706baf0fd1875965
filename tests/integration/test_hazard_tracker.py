"""hazard_tracker through the real daemon: lifecycle, rejections, overdue on a manual clock, queries, restarts."""

import datetime
import json
import os

from harness import TOP, Daemon, main

PLUGIN = "hazard_tracker"
FIXTURES = os.path.join(TOP, "tests", "fixtures", "hazard_tracker")

# START in the harness is 2026-06-15T07:00:00+08:00: a general hazard reported then is due at
# the end of 2026-06-22 in Shanghai (15:59:59Z) and overdue from 2026-06-22T16:00:00Z.
DEADLINE = "2026-06-22T15:59:59Z"
OVERDUE_AT = "2026-06-22T16:00:00Z"


def daemon(name, config=""):
    return Daemon(name, plugins=[PLUGIN], config=config)


def report(d, code, actor="p-safety", school="sch-001", **extra):
    data = {"hazard": code, "title": "loose handrail", "risk": "general", "location": "stair B",
            "category": "building"}
    data.update(extra)
    return d.ok("hazard.reported", data, actor=actor, school=school)


def hazard(d, code, school="sch-001"):
    r = d.query(PLUGIN, "hazard", school=school, hazard=code)
    assert r["ok"], r
    return r


def emitted(d, type, after=0):
    """Events of `type` the plugin raised, in journal order (after a sync)."""
    d.sync()
    return [e for e in d.events(type, after=after) if e["source"] == PLUGIN]


def rejection(d, event):
    """The hazard.rejected that answers journal event `event` (exactly one)."""
    rows = [e for e in emitted(d, "hazard.rejected") if e["data"]["event"] == event]
    assert len(rows) == 1, rows
    return rows[0]["data"]


def iso(ts):
    """A journal timestamp as RFC 3339 UTC, the form the plugin writes."""
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_full_lifecycle():
    with daemon("hz-life") as d:
        d.directory()
        ev = report(d, "hz-1", attachments=["photo-1"])
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"}, actor="p-safety")
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted",
                                  "evidence": ["photo-2"]})
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": False,
                                 "note": "still loose"})
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "welded"})
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True})
        d.sync()
        r = hazard(d, "hz-1")
        h = r["hazard"]
        assert h["state"] == "closed" and h["district"] == "dist-01", h
        assert h["report_event"] == ev and h["reporter"] == "p-safety", h
        assert h["attachments"] == ["photo-1"] and h["measures"] == "welded", h
        assert h["round"] == 2, h  # the failed verification started a second deadline
        actions = [(x["action"], x["from"], x["to"], x["actor"]) for x in r["history"]]
        assert actions == [
            ("reported", None, "reported", "p-safety"),
            ("assigned", "reported", "assigned", "p-safety"),
            ("rectified", "assigned", "rectified", "t-101"),
            ("reopened", "rectified", "assigned", "p-safety"),
            ("rectified", "assigned", "rectified", "t-101"),
            ("verified", "rectified", "closed", "p-safety"),
        ], actions
        closed = emitted(d, "hazard.closed")
        assert len(closed) == 1 and closed[0]["data"]["outcome"] == "closed", closed
        assert closed[0]["school"] == "sch-001", closed
        assert not emitted(d, "hazard.rejected")
        # Nothing is ever deleted: the history refuses changes even to the database owner.
        try:
            d.sql("DELETE FROM hazard.history")
            raise AssertionError("history row deleted")
        except Exception as e:  # psycopg2.errors.RaiseException
            assert "append-only" in str(e), e
        # A withdrawn report stays in the ledger, with its reason.
        report(d, "hz-2")
        d.ok("hazard.withdrawn", {"hazard": "hz-2", "by": "p-safety", "reason": "same as hz-1"})
        d.sync()
        h2 = hazard(d, "hz-2")["hazard"]
        assert h2["state"] == "withdrawn" and h2["withdrawn_reason"] == "same as hz-1", h2


def test_each_rejection_with_its_reason():
    with daemon("hz-reject") as d:
        d.directory()
        report(d, "hz-1")
        cases = []

        def refused(type, data, rule, reason):
            d.sync()  # what was sent before is handled: the ledger as it was
            before = hazard(d, data["hazard"]) if data["hazard"] != "hz-404" else None
            ev = d.ok(type, data)
            got = rejection(d, ev)
            assert got["rule"] == rule, (type, got)
            assert got["reason"] == reason, (type, got)
            assert got["hazard"] == data["hazard"] and got["type"] == type, got
            if before is not None:
                after = hazard(d, data["hazard"])
                assert after["hazard"] == before["hazard"], "%s changed the ledger" % type
                assert after["history"] == before["history"], "%s changed the history" % type
            cases.append(rule)

        refused("hazard.assigned", {"hazard": "hz-404", "assignee": "t-101"}, "unknown_hazard",
                "no hazard hz-404 at school sch-001")
        refused("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"},
                "wrong_state",
                "hazard hz-1 is reported: hazard.rectified applies to a hazard that is assigned")
        refused("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True},
                "wrong_state",
                "hazard hz-1 is reported: hazard.verified applies to a hazard that is rectified")
        refused("hazard.reported", {"hazard": "hz-1", "title": "something else", "risk": "general"},
                "duplicate",
                "hazard hz-1 is already in the ledger of school sch-001 with a different report")
        refused("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101", "deadline": "2026-06-01"},
                "deadline_past",
                "deadline 2026-06-01T15:59:59Z is before the event (2026-06-14T23:00:00Z)")
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"})
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        refused("hazard.verified", {"hazard": "hz-1", "by": "t-101", "passed": True}, "same_person",
                "hazard hz-1 was rectified by t-101, who cannot also verify it")
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True})
        refused("hazard.withdrawn", {"hazard": "hz-1", "by": "p-safety", "reason": "oops"},
                "wrong_state",
                "hazard hz-1 is closed: hazard.withdrawn applies to a hazard that is reported, "
                "assigned or rectified")
        # An identical re-report (a resend under another id) is a no-op, not a rejection.
        n = len(emitted(d, "hazard.rejected"))
        report(d, "hz-1")
        assert len(emitted(d, "hazard.rejected")) == n
        assert cases == ["unknown_hazard", "wrong_state", "wrong_state", "duplicate",
                         "deadline_past", "same_person", "wrong_state"]


def test_invalid_events_refused_at_ingest():
    with open(os.path.join(FIXTURES, "invalid.json")) as f:
        cases = json.load(f)
    with daemon("hz-invalid") as d:
        d.directory()
        for c in cases:
            r = d.send(c["type"], c["data"])
            assert not r["ok"] and r["error"] == "invalid_event", (c, r)
            assert r["detail"] == c["detail"], (c, r)
        for t in ("hazard.overdue", "hazard.reminder", "hazard.rejected", "hazard.major.reported",
                  "hazard.closed"):
            r = d.send(t, {"hazard": "hz-1"})
            assert not r["ok"] and r["error"] == "forbidden", (t, r)
        assert d.sql("SELECT count(*) AS n FROM hazard.hazards")[0]["n"] == 0


def test_overdue_once_then_reminders():
    with daemon("hz-overdue") as d:
        d.directory()
        report(d, "hz-1")
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"})
        d.set_time("2026-06-22T23:59:00+08:00")
        assert not emitted(d, "hazard.overdue")
        d.advance(120)
        od = emitted(d, "hazard.overdue")
        assert len(od) == 1, od
        assert iso(od[0]["occurred_at"]) == OVERDUE_AT, od
        assert od[0]["data"]["deadline"] == DEADLINE and od[0]["data"]["risk"] == "general", od
        assert od[0]["data"]["assignee"] == "t-101" and od[0]["district"] == "dist-01", od
        assert not emitted(d, "hazard.reminder")
        # Three days later: three reminders, one a day, the overdue still once.
        d.advance(3 * 86400)
        rem = emitted(d, "hazard.reminder")
        assert [r["data"]["days_overdue"] for r in rem] == [1, 2, 3], rem
        # A 30-day jump: each reminder that fell due, at its own instant.
        d.advance(30 * 86400)
        rem = emitted(d, "hazard.reminder")
        assert [r["data"]["days_overdue"] for r in rem] == list(range(1, 34)), rem
        assert [iso(r["occurred_at"]) for r in rem][-1] == "2026-07-25T16:00:00Z"
        assert len(emitted(d, "hazard.overdue")) == 1
        # The open list says so too.
        o = d.query(PLUGIN, "open", school="sch-001", overdue=True)
        assert [h["hazard"] for h in o["hazards"]] == ["hz-1"] and o["hazards"][0]["overdue"], o
        # Rectified: the reminders stop.
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        d.advance(10 * 86400)
        assert len(emitted(d, "hazard.reminder")) == 33
        assert len(emitted(d, "hazard.overdue")) == 1


def test_reminder_interval_config():
    with daemon("hz-remcfg", config='hazard_tracker: { reminder_interval = "12h"; '
                                     'deadline_days_general = 1; };') as d:
        d.directory()
        report(d, "hz-1")
        d.set_time("2026-06-18T00:00:00+08:00")  # overdue from 06-17 00:00 local
        assert len(emitted(d, "hazard.overdue")) == 1
        assert len(emitted(d, "hazard.reminder")) == 2


def test_major_hazard_five_commitments():
    with daemon("hz-major") as d:
        d.directory()
        ev = report(d, "hz-m", title="cracked load-bearing wall", risk="major",
                    interim_measures="classroom closed, area fenced")
        major = emitted(d, "hazard.major.reported")
        assert len(major) == 1, major
        m = major[0]
        assert m["school"] == "sch-001" and m["district"] == "dist-01", m
        assert m["data"]["district"] == "dist-01" and m["data"]["school"] == "sch-001", m
        assert m["data"]["hazard"] == "hz-m" and m["data"]["risk"] == "major", m
        assert m["data"]["missing"] == ["measures", "responsible", "funds", "time_limit",
                                        "emergency_plan"], m
        assert m["data"]["deadline"] == "2026-07-15T15:59:59Z", m  # 30 days
        assert ev > 0
        d.ok("hazard.assigned", {"hazard": "hz-m", "assignee": "t-101"})
        d.ok("hazard.rectified", {"hazard": "hz-m", "by": "t-101", "measures": "wall rebuilt"})
        ev = d.ok("hazard.verified", {"hazard": "hz-m", "by": "p-safety", "passed": True})
        got = rejection(d, ev)
        assert got["rule"] == "commitments_missing", got
        assert got["reason"] == ("major hazard hz-m cannot be closed: 五落实 missing responsible, "
                                 "funds, time_limit, emergency_plan"), got
        assert hazard(d, "hz-m")["hazard"]["state"] == "rectified"
        d.ok("hazard.commitments", {"hazard": "hz-m", "by": "p-principal",
                                    "responsible": "p-principal", "funds": 85000,
                                    "time_limit": "2026-07-10", "emergency_plan": "ep-2026-04"})
        d.ok("hazard.verified", {"hazard": "hz-m", "by": "p-safety", "passed": True})
        d.sync()
        h = hazard(d, "hz-m")["hazard"]
        assert h["state"] == "closed", h
        assert h["commitments"]["missing"] == [] and h["commitments"]["funds"] == "85000", h
        assert h["commitments"]["measures"] == "wall rebuilt", h


def test_overdue_major_goes_to_the_district():
    with daemon("hz-major-od") as d:
        d.directory()
        report(d, "hz-m", risk="major", deadline="2026-06-20")
        report(d, "hz-g", deadline="2026-06-20")
        d.set_time("2026-06-21T09:00:00+08:00")
        od = {e["data"]["hazard"]: e for e in emitted(d, "hazard.overdue")}
        assert set(od) == {"hz-m", "hz-g"}, od
        assert od["hz-m"]["data"]["risk"] == "major"
        assert od["hz-m"]["data"]["escalate_to"] == "district"
        assert od["hz-m"]["district"] == "dist-01" and od["hz-m"]["data"]["district"] == "dist-01"
        assert od["hz-g"]["data"]["escalate_to"] == "school"


def test_queries_and_ctl():
    with daemon("hz-query") as d:
        d.directory()
        report(d, "hz-1")
        report(d, "hz-2", risk="major", category="fire")
        report(d, "hz-9", school="sch-002")
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"})
        d.set_time("2026-06-16T09:00:00+08:00")
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        d.set_time("2026-06-17T07:00:00+08:00")
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True})
        d.set_time("2026-06-25T09:00:00+08:00")

        o = d.query(PLUGIN, "open", district="dist-01")
        assert o["ok"] and [h["hazard"] for h in o["hazards"]] == ["hz-9", "hz-2"], o
        hz9 = o["hazards"][0]
        assert hz9["overdue"] and hz9["days_to_deadline"] == -3 and hz9["age_days"] == 10, hz9
        o = d.query(PLUGIN, "open", school="sch-001", category="fire")
        assert [h["hazard"] for h in o["hazards"]] == ["hz-2"], o

        # The same through safecampusctl.
        p = d.ctl("query", PLUGIN, "open", "school=sch-001", "risk=major")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert [h["hazard"] for h in out["hazards"]] == ["hz-2"], out
        p = d.ctl("query", PLUGIN, "nonsense")
        assert p.returncode != 0
        assert "what: must be one of open, hazard, figures, ledger" in p.stdout + p.stderr

        f = d.query(PLUGIN, "figures", district="dist-01", **{"from": "2026-06-01", "to": "2026-06-30"})
        assert f["ok"], f
        assert (f["found"], f["closed"], f["rectified_on_time"], f["still_open"]) == (3, 1, 1, 2), f
        assert f["overdue"] == 1 and f["mean_days_to_close"] == 2.0, f
        assert f["schools"]["sch-002"]["overdue"] == 1, f
        assert f["schools"]["sch-001"]["major"] == 1, f

        led = d.query(PLUGIN, "ledger", school="sch-001", **{"from": "2026-06-01", "to": "2026-06-30"})
        sec = led["sections"][0]
        assert sec["key"] == "hazards" and sec["title_zh"] == "隐患排查与整改", sec
        col = {c: i for i, c in enumerate(sec["columns"])}
        rows = {r[col["hazard"]]: r for r in sec["rows"]}
        assert set(rows) == {"hz-1", "hz-2"}, rows
        assert rows["hz-1"][col["found_at"]] == "2026-06-15 07:00", rows
        assert rows["hz-1"][col["status"]] == "closed" and rows["hz-1"][col["verified_by"]] == "p-safety"
        assert led["next"] is None

        bad = d.query(PLUGIN, "figures", school="sch-001", **{"from": "2026-06-01"})
        assert not bad["ok"] and bad["error"] == "to: required", bad


def test_restart_in_the_middle_of_a_lifecycle():
    with daemon("hz-restart") as d:
        d.directory()
        report(d, "hz-1")
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"})
        d.sync()
        # Killed outright: the deadline lives in the database, not in the process.
        d.kill()
        d.start()
        d.set_time("2026-06-23T09:00:00+08:00")
        assert len(emitted(d, "hazard.overdue")) == 1
        assert len(emitted(d, "hazard.reminder")) == 0
        # Stopped again after the overdue: it is not raised a second time.
        d.stop()
        d.start()
        d.advance(86400)
        assert len(emitted(d, "hazard.overdue")) == 1
        assert len(emitted(d, "hazard.reminder")) == 1
        d.ok("hazard.rectified", {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        d.restart()
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True})
        d.sync()
        r = hazard(d, "hz-1")
        assert r["hazard"]["state"] == "closed", r
        assert [x["action"] for x in r["history"]] == ["reported", "assigned", "overdue",
                                                      "reminder", "rectified", "verified"], r
        assert not emitted(d, "hazard.rejected")


def test_inspection_resend_is_one_hazard():
    with daemon("hz-resend") as d:
        d.directory()
        data = {"hazard": "insp-tk-12-item-3", "title": "exit chained", "risk": "general",
                "category": "fire", "reporter": "t-101",
                "origin": {"kind": "inspection", "task": "tk-12", "item": "item-3",
                           "template": "daily-patrol", "system": "inspection_scheduler"}}
        d.ok("hazard.reported", data, source="inspection-app", id="c-1")
        again = dict(data, description="noted again on resend")
        d.ok("hazard.reported", again, source="inspection-app", id="c-2")
        d.sync()
        assert d.sql("SELECT count(*) AS n FROM hazard.hazards")[0]["n"] == 1
        assert d.sql("SELECT count(*) AS n FROM hazard.history")[0]["n"] == 1
        assert not emitted(d, "hazard.rejected")


def test_failed_inspection_item_becomes_a_hazard():
    # With the real inspection_scheduler: its hazard.reported passes this plugin's rules.
    with Daemon("hz-insp", plugins=["inspection_scheduler", PLUGIN]) as d:
        d.directory()
        d.ok("inspection.template.upserted", {
            "template": "daily-patrol", "title": "Daily patrol", "area": "building A",
            "items": [{"item": "exits", "text": "fire exits free", "category": "fire"},
                      {"item": "rails", "text": "stair rails fixed", "category": "building"}]})
        d.ok("inspection.completed", {
            "template": "daily-patrol", "inspector": "p-safety",
            "results": [{"item": "exits", "status": "fail", "note": "exit B chained", "risk": "major"},
                        {"item": "rails", "status": "ok"}]})
        d.sync()
        o = d.query(PLUGIN, "open", school="sch-001")
        assert len(o["hazards"]) == 1, o
        h = hazard(d, o["hazards"][0]["hazard"])["hazard"]
        assert h["origin"]["kind"] == "inspection" and h["origin"]["item"] == "exits", h
        assert h["category"] == "fire" and h["risk"] == "major", h
        assert h["location"] == "building A" and h["reporter"] == "p-safety", h
        assert h["description"] == "exit B chained", h
        assert len(emitted(d, "hazard.major.reported")) == 1
        assert not emitted(d, "hazard.rejected")


if __name__ == "__main__":
    main(globals())
