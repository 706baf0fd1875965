"""inspection_scheduler through the real daemon on a manual clock: due, missed, completed,
failed items to hazards (once), seasons, weather alerts, a multi-day jump, an outage."""

import json
import os

from harness import TOP, Daemon, main

PLUGIN = "inspection_scheduler"
FIXTURES = os.path.join(TOP, "tests", "fixtures", PLUGIN)

# The harness clock starts at 2026-06-15T07:00:00+08:00, a Monday, in Asia/Shanghai (UTC+8).


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def send_fixture(d, name, school="sch-001", **data):
    env = fixture(name)
    env["data"].update(data)
    return d.ok(env["type"], env["data"], school=school, source=env.get("source", "test"),
                actor=env.get("actor"))


def templates(d):
    for name in ("template_fire.json", "template_typhoon.json", "template_classroom.json"):
        send_fixture(d, name)
    send_fixture(d, "template_typhoon.json", school="sch-002")


def emitted(d, type, after=0):
    """Events of `type` the plugin raised, in journal order (after a sync)."""
    d.sync()
    return [e for e in d.events(type, after=after) if e["source"] == PLUGIN]


def iso(ts):
    return ts.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def daily_patrol(d, **extra):
    data = {"schedule": "patrol", "template": "classroom-daily",
            "rrule": "FREQ=DAILY;BYHOUR=8;BYMINUTE=0", "assignee_role": "safety_officer",
            "due_within": "2h", "grace": "1h"}
    data.update(extra)
    return d.ok("inspection.schedule.upserted", data)


PATROL_OK = [{"item": "windows", "status": "ok"}, {"item": "sockets", "status": "na"}]


def test_due_missed_completed():
    with Daemon("insp-due", plugins=[PLUGIN]) as d:
        d.directory()
        templates(d)
        daily_patrol(d)
        d.set_time("2026-06-15T08:00:00+08:00")
        due = emitted(d, "inspection.due")
        assert len(due) == 1, due
        assert due[0]["data"]["task"] == "patrol-20260615T0800", due
        assert due[0]["data"]["due_at"] == "2026-06-15T02:00:00Z", due
        assert due[0]["data"]["assignees"] == ["p-safety"], due
        assert iso(due[0]["occurred_at"]) == "2026-06-15T00:00:00Z", due
        assert due[0]["school"] == "sch-001", due

        d.ok("inspection.completed", {"task": "patrol-20260615T0800", "inspector": "p-safety",
                                      "results": PATROL_OK}, actor="p-safety")
        # The 16th is not done: missed at 11:00 (due 10:00 + 1h grace), once.
        d.set_time("2026-06-16T12:00:00+08:00")
        missed = emitted(d, "inspection.missed")
        assert [m["data"]["task"] for m in missed] == ["patrol-20260616T0800"], missed
        assert iso(missed[0]["occurred_at"]) == "2026-06-16T03:00:00Z", missed
        d.advance(3600)
        assert len(emitted(d, "inspection.missed")) == 1

        fig = d.query(PLUGIN, "figures", school="sch-001", **{"from": "2026-06-15",
                                                              "to": "2026-06-16"})
        assert (fig["tasks"], fig["on_time"], fig["missed"]) == (2, 1, 1), fig
        assert not emitted(d, "inspection.rejected")


def test_failed_items_to_hazards_once():
    with Daemon("insp-hazard", plugins=[PLUGIN, "hazard_tracker"]) as d:
        d.directory()
        templates(d)
        d.ok("inspection.schedule.upserted",
             {"schedule": "fire", "template": "fire-monthly",
              "rrule": "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=9", "assignee_role": "safety_officer"})
        d.set_time("2026-06-15T09:30:00+08:00")
        task = emitted(d, "inspection.due")[0]["data"]["task"]
        assert task == "fire-20260615T0900", task
        env = fixture("completion_fail.json")
        env["data"]["task"] = task
        first = d.send(env["type"], env["data"], actor="p-safety", id="completion-1")
        assert first["ok"], first
        # The same envelope again is a duplicate; a new envelope for it is refused.
        again = d.send(env["type"], env["data"], actor="p-safety", id="completion-1")
        assert again["ok"] and again["duplicate"], again
        d.ok(env["type"], env["data"], actor="p-safety", id="completion-2")
        d.sync()
        hazards = emitted(d, "hazard.reported")
        codes = sorted(h["data"]["hazard"] for h in hazards)
        assert codes == ["insp-fire-20260615T0900-extinguishers",
                         "insp-fire-20260615T0900-wiring"], codes
        assert all(h["data"]["origin"]["task"] == task for h in hazards), hazards
        rejected = emitted(d, "inspection.rejected")
        assert len(rejected) == 1 and "already completed" in rejected[0]["data"]["reason"], \
            rejected
        # hazard_tracker took both into its ledger and refused none.
        d.sync()
        hz = [e for e in d.events("hazard.rejected")]
        assert not hz, hz
        r = d.query("hazard_tracker", "hazard", school="sch-001",
                    hazard="insp-fire-20260615T0900-wiring")
        assert r["hazard"]["risk"] == "major", r


def test_seasonal_intensification():
    with Daemon("insp-season", plugins=[PLUGIN], clock="2026-05-27T12:00:00+08:00") as d:
        d.directory()
        templates(d)
        d.ok("inspection.schedule.upserted",
             {"schedule": "roof", "template": "storm-check",
              "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0",
              "assignee_role": "safety_officer",
              "seasons": [{"season": "plum_rain", "rrule": "FREQ=DAILY;BYHOUR=8"}]})
        # This year the district declares the plum-rain season from 3 June.
        d.ok("inspection.season.upserted", {"season": "plum_rain", "from": "2026-06-03",
                                            "to": "2026-07-10"}, school=None, district="dist-01")
        d.set_time("2026-06-06T09:00:00+08:00")
        tasks = [e["data"]["task"] for e in emitted(d, "inspection.due")]
        assert tasks == ["roof-20260601T0800", "roof-20260603T0800", "roof-20260604T0800",
                         "roof-20260605T0800", "roof-20260606T0800"], tasks
        nxt = d.query(PLUGIN, "next", school="sch-001", schedule="roof", count=2,
                      after="2026-07-09T00:00:00+08:00")
        assert [o["local"] for o in nxt["occurrences"]] == \
            ["2026-07-09T08:00:00+08:00", "2026-07-10T08:00:00+08:00"], nxt


def test_weather_alerts():
    with Daemon("insp-weather", plugins=[PLUGIN]) as d:
        d.directory()
        templates(d)
        d.ok("weather.alert", {"kind": "typhoon", "level": "orange"}, school=None,
             district="dist-01")
        due = emitted(d, "inspection.due")
        assert sorted(e["school"] for e in due) == ["sch-001", "sch-002"], due
        assert all(e["data"]["template"] == "storm-check" for e in due), due
        by_school = {e["school"]: e["data"]["assignees"] for e in due}
        assert by_school == {"sch-001": ["p-safety"], "sch-002": ["p2-safety"]}, by_school
        # While those are open, an upgrade adds nothing; a kind no template names, nothing.
        d.ok("weather.alert", {"kind": "rainstorm", "level": "red"}, school="sch-001")
        d.ok("weather.alert", {"kind": "heat", "level": "red"}, school="sch-001")
        assert len(emitted(d, "inspection.due")) == 2
        d.advance(5 * 3600)
        assert len(emitted(d, "inspection.missed")) == 2


def test_multi_day_jump_and_outage():
    with Daemon("insp-jump", plugins=[PLUGIN]) as d:
        d.directory()
        templates(d)
        daily_patrol(d)
        d.advance(3 * 86400)  # to 2026-06-18T07:00+08:00
        due = emitted(d, "inspection.due")
        missed = emitted(d, "inspection.missed")
        assert [iso(e["occurred_at"]) for e in due] == \
            ["2026-06-15T00:00:00Z", "2026-06-16T00:00:00Z", "2026-06-17T00:00:00Z"], due
        assert [iso(e["occurred_at"]) for e in missed] == \
            ["2026-06-15T03:00:00Z", "2026-06-16T03:00:00Z", "2026-06-17T03:00:00Z"], missed

        # Down from the 18th 07:00 to the 20th 09:00: the 18th, 19th and 20th are still
        # created; the 18th and 19th are missed, the 20th is open.
        d.stop()
        # The manual clock is kept in core.clock; moving it while the daemon is down is the
        # outage: at start-up the clock reads the 20th.
        d.sql("UPDATE core.clock SET now = %s WHERE id = 1", ["2026-06-20T09:00:00+08:00"])
        d.start()
        d.sync()
        due = emitted(d, "inspection.due")
        assert len(due) == 6, [e["data"]["task"] for e in due]
        assert len(emitted(d, "inspection.missed")) == 5
        t = d.query(PLUGIN, "tasks", person="p-safety")
        assert [x["task"] for x in t["today"]] == ["patrol-20260620T0800"], t
        assert [x["status"] for x in t["today"]] == ["open"], t


def test_bad_input():
    with Daemon("insp-bad", plugins=[PLUGIN]) as d:
        d.directory()
        templates(d)
        r = d.send("inspection.schedule.upserted",
                   {"schedule": "s", "template": "fire-monthly", "rrule": "FREQ=SOMETIMES",
                    "assignee_role": "teacher"})
        assert not r["ok"] and r["error"] == "invalid_event", r
        assert r["detail"].startswith("data.rrule: "), r
        r = d.send("inspection.due", {"task": "x", "schedule": "s", "template": "t",
                                      "due_at": "2026-06-15T00:00:00Z"})
        assert not r["ok"], r
        ev = d.ok("inspection.schedule.upserted",
                  {"schedule": "s", "template": "nope", "rrule": "FREQ=DAILY",
                   "assignee_role": "teacher"})
        ev2 = d.ok("inspection.completed", {"task": "nope", "inspector": "p-safety",
                                            "results": [{"item": "a", "status": "ok"}]})
        rej = {e["data"]["event"]: e["data"]["reason"] for e in emitted(d, "inspection.rejected")}
        assert "unknown template" in rej[ev], rej
        assert "unknown task" in rej[ev2], rej


def test_ledger_section():
    with Daemon("insp-ledger", plugins=[PLUGIN]) as d:
        d.directory()
        templates(d)
        daily_patrol(d)
        d.set_time("2026-06-16T09:00:00+08:00")
        d.ok("inspection.completed", {"task": "patrol-20260616T0800", "inspector": "p-safety",
                                      "results": [{"item": "windows", "status": "fail",
                                                   "note": "cracked pane, room 204"},
                                                  {"item": "sockets", "status": "ok"}]})
        d.sync()
        r = d.query(PLUGIN, "ledger", school="sch-001", **{"from": "2026-06-15",
                                                           "to": "2026-06-16"})
        sec = r["sections"][0]
        assert sec["key"] == "inspections", sec
        rows = [dict(zip(sec["columns"], row)) for row in sec["rows"]]
        assert [(x["task"], x["status"]) for x in rows] == \
            [("patrol-20260615T0800", "missed"), ("patrol-20260616T0800", "completed")], rows
        assert "cracked pane" in rows[1]["findings"], rows
        assert r["next"] is None, r


if __name__ == "__main__":
    main(globals())
