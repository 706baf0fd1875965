"""ledger through the real daemon: records and refusals, the drill minimum and the overstay on the
manual clock, outing reminders, the assessment on a small known history, and the ledger export."""

import csv
import datetime
import json
import os
import shutil
import tempfile

from harness import TOP, Daemon, main

PLUGIN = "ledger"
FIXTURE = os.path.join(TOP, "tests", "fixtures", "ledger", "term.jsonl")

PLAN = {"headcount": 40, "route": "bus 12", "place": "Science museum",
        "security_measures": "one teacher per ten pupils", "responsible": "t-101",
        "emergency_plan": "first-aid kit, phone tree"}


def emitted(d, type, after=0):
    """Events of `type` the plugin raised, in journal order (after a sync)."""
    d.sync()
    return [e for e in d.events(type, after=after) if e["source"] == PLUGIN]


def utc(ts):
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def q(d, what, **kw):
    r = d.query(PLUGIN, what, **kw)
    assert r.get("ok"), r
    return r


def at(d, when, type, data, **kw):
    """Moves the clock to `when` and sends an event that happened then; returns its number."""
    d.set_time(when)
    return d.ok(type, data, occurred_at=when, **kw)


def test_records_and_refusals():
    with Daemon("lg-records", plugins=[PLUGIN]) as d:
        d.directory()
        # refused at ingest, naming the field and the rule
        for type, data, detail in [
            ("outing.approved", {"outing": "o-1"}, "data.by: required"),
            ("meeting.held", {"meeting": "m-1", "attendees": [], "decisions": []},
             "data.attendees: must not be empty"),
            ("drill.scheduled", {"drill": "d-1", "kind": "evacuation",
                                 "starts_at": "2026-06-20T10:00:00+08:00"}, "data.ends_at: required"),
            ("gate.entry", {"kind": "pupil"}, "data.card: required"),
            ("outing.submitted", {"outing": "o-1", "headcount": "forty"},
             "data.headcount: expected an integer"),
        ]:
            r = d.send(type, data)
            assert not r["ok"] and r["error"] == "invalid_event", r
            assert detail in r["detail"], (detail, r)
        r = d.send("drill.overdue", {"school": "sch-001", "month": "2026-06"})
        assert not r["ok"], r  # raised by the plugin only

        # the 15-day rule, in the school's local dates, and missing fields
        late = d.ok("outing.submitted", dict(PLAN, outing="o-1", starts_at="2026-06-25T08:00:00+08:00",
                                             ends_at="2026-06-25T15:00:00+08:00"), actor="t-101")
        lacking = dict(PLAN, outing="o-2", starts_at="2026-08-25T08:00:00+08:00",
                       ends_at="2026-08-25T15:00:00+08:00")
        del lacking["emergency_plan"]
        d.ok("outing.submitted", lacking, actor="t-101")
        good = dict(PLAN, outing="o-3", starts_at="2026-06-30T08:00:00+08:00",
                    ends_at="2026-06-30T15:00:00+08:00")
        d.ok("outing.submitted", good, actor="t-101")
        rej = {e["data"]["outing"]: e for e in emitted(d, "outing.rejected")}
        assert sorted(rej) == ["o-1", "o-2"], rej
        assert rej["o-1"]["data"]["event"] == late, rej["o-1"]
        assert rej["o-1"]["data"]["days_ahead"] == 10, rej["o-1"]
        assert "at least 15" in rej["o-1"]["data"]["reason"], rej["o-1"]
        assert rej["o-1"]["school"] == "sch-001" and rej["o-1"]["district"] == "dist-01", rej["o-1"]
        assert rej["o-2"]["data"]["missing"] == ["emergency_plan"], rej["o-2"]

        # approval by the principal only
        d.ok("outing.approved", {"outing": "o-3"}, actor="p-safety")
        d.ok("outing.approved", {"outing": "o-3"}, actor="p-principal")
        reasons = [e["data"]["reason"] for e in emitted(d, "outing.rejected")]
        assert len(reasons) == 3 and "p-safety may not decide" in reasons[2], reasons
        rows = q(d, "outings", school="sch-001")["rows"]
        status = {r[0]: r[12] for r in rows}
        assert status == {"o-1": "refused", "o-2": "refused", "o-3": "approved"}, status

        # no return report: a reminder two hours after the end
        d.set_time("2026-06-30T16:59:00+08:00")
        assert emitted(d, "outing.reminder") == []
        d.set_time("2026-06-30T17:01:00+08:00")
        rem = emitted(d, "outing.reminder")
        assert len(rem) == 1 and rem[0]["data"]["outing"] == "o-3", rem
        assert utc(rem[0]["occurred_at"]) == "2026-06-30T09:00:00Z", rem
        d.ok("outing.returned", {"outing": "o-3", "headcount": 40})
        d.advance(5 * 86400)
        assert len(emitted(d, "outing.reminder")) == 1

        # drills refused out of order
        ev = d.ok("drill.ended", {"drill": "d-9"})
        lr = [e for e in emitted(d, "ledger.rejected") if e["data"]["event"] == ev]
        assert len(lr) == 1 and "drill d-9 is unknown" in lr[0]["data"]["reason"], lr

        # each record kind lands in its section
        d.ok("leadership.member.upserted", {"member": "p-principal", "position": "leader",
                                            "duty": "first responsible person"})
        d.ok("rule.published", {"rule": "r-fire", "version": "1", "title": "Fire safety rules"})
        d.ok("agreement.signed", {"agreement": "a-1", "party": "t-101", "party_role": "head_teacher",
                                  "term": "2025-2026-2"})
        d.ok("education.session", {"session": "e-1", "topic": "drowning", "teacher": "t-101"})
        d.ok("meeting.held", {"meeting": "m-1", "attendees": ["p-principal", "p-safety"],
                              "decisions": ["summer safety letter to parents"]})
        d.ok("drill.conducted", {"drill": "d-1", "kind": "evacuation",
                                 "starts_at": "2026-07-06T10:00:00+08:00", "participants": 600})
        d.sync()
        period = {"school": "sch-001", "from": "2026-06-01", "to": "2026-07-31"}
        for what, n in [("leadership", 1), ("rules", 1), ("agreements", 1), ("education", 1),
                        ("meetings", 1), ("drills", 1), ("outings", 3)]:
            rows = q(d, what, **period)["rows"]
            assert len(rows) == n, (what, rows)
        # the agreement's roster comes from the directory: three head teachers, one teacher
        shares = {r[1]: r for r in q(d, "agreement_shares", **period)["rows"]}
        assert shares["head_teacher"][2:5] == [3, 1, 2], shares
        assert shares["teacher"][2:5] == [1, 0, 1], shares


def test_drill_minimum_on_the_manual_clock():
    with Daemon("lg-drills", plugins=[PLUGIN], clock="2026-02-25T10:00:00+08:00") as d:
        d.directory()
        d.sync()
        d.set_time("2026-04-01T08:00:00+08:00")
        over = emitted(d, "drill.overdue")
        got = sorted((e["school"], e["data"]["month"]) for e in over)
        assert got == [("sch-001", "2026-03"), ("sch-002", "2026-03")], got
        assert all(utc(e["occurred_at"]) == "2026-03-31T16:00:00Z" for e in over), over
        last = max(e["id"] for e in over)
        at(d, "2026-04-10T10:30:00+08:00", "drill.conducted",
           {"drill": "d-apr", "kind": "evacuation", "starts_at": "2026-04-10T10:00:00+08:00"})
        # February (nine days in term) was never checked; a month's jump fires every month between
        d.set_time("2026-07-01T08:00:00+08:00")
        got = [(e["school"], e["data"]["month"]) for e in emitted(d, "drill.overdue", after=last)]
        assert sorted(got) == [("sch-001", "2026-05"), ("sch-001", "2026-06"),
                               ("sch-002", "2026-04"), ("sch-002", "2026-05"),
                               ("sch-002", "2026-06")], got
        months = q(d, "drill_months", school="sch-001", **{"from": "2026-03-01", "to": "2026-06-30"})
        assert [(r[0], r[4]) for r in months["rows"]] == [
            ("2026-03", False), ("2026-04", True), ("2026-05", False), ("2026-06", False)], months


def test_overstay_and_card_log():
    with Daemon("lg-gate", plugins=[PLUGIN]) as d:
        d.directory()
        at(d, "2026-06-15T10:00:00+08:00", "gate.entry",
           {"visit": "v-1", "name": "Zhao", "purpose": "repairs", "host": "p-safety"}, source="gate")
        at(d, "2026-06-15T11:00:00+08:00", "gate.entry", {"visit": "v-2", "name": "Qian"}, source="gate")
        at(d, "2026-06-15T12:00:00+08:00", "gate.exit", {"visit": "v-2"}, source="gate")
        for i in range(3):
            d.ok("gate.entry", {"kind": "pupil", "card": "c-%d" % i},
                 occurred_at="2026-06-15T07:3%d:00+08:00" % i, source="cards")
        d.set_time("2026-06-15T17:59:00+08:00")
        assert emitted(d, "gate.overstay") == []
        assert [v["visit"] for v in q(d, "on_site", school="sch-001")["visitors"]] == ["v-1"]
        d.set_time("2026-06-15T18:01:00+08:00")
        over = emitted(d, "gate.overstay")
        assert len(over) == 1 and over[0]["data"]["visit"] == "v-1", over
        assert utc(over[0]["occurred_at"]) == "2026-06-15T10:00:00Z", over
        assert over[0]["data"]["host"] == "p-safety", over
        cards = q(d, "gate_cards", school="sch-001", **{"from": "2026-06-15", "to": "2026-06-15"})
        assert cards["rows"] == [["2026-06-15", 3, 0, 3]], cards
        cols = d.sql("SELECT data_type FROM information_schema.columns"
                     " WHERE table_schema = 'ledger' AND table_name = 'card_events'")
        assert len(cols) == 4 and not any("json" in c["data_type"] for c in cols), cols


def test_assessment_on_a_known_history():
    with Daemon("lg-assess", plugins=[PLUGIN, "hazard_tracker"],
                clock="2026-03-01T08:00:00+08:00") as d:
        d.directory()
        at(d, "2026-03-02T09:00:00+08:00", "hazard.reported",
           {"hazard": "hz-1", "title": "loose handrail", "risk": "general"}, actor="p-safety")
        d.ok("hazard.reported", {"hazard": "hz-2", "title": "socket without cover", "risk": "general"},
             actor="p-safety")
        d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-101"}, actor="p-safety")
        d.ok("hazard.assigned", {"hazard": "hz-2", "assignee": "t-102"}, actor="p-safety")
        at(d, "2026-03-03T09:00:00+08:00", "hazard.rectified",
           {"hazard": "hz-1", "by": "t-101", "measures": "bolted"})
        d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-safety", "passed": True})
        at(d, "2026-03-12T10:30:00+08:00", "drill.conducted",
           {"drill": "d-1", "kind": "evacuation", "starts_at": "2026-03-12T10:00:00+08:00",
            "responsible": "p-safety"})
        for i, teacher in enumerate(["t-101", "t-201"]):
            d.ok("education.session", {"session": "e-%d" % i, "topic": "fire", "teacher": teacher},
                 occurred_at="2026-03-12T0%d:00:00+08:00" % (8 + i))
        d.ok("agreement.signed", {"agreement": "a-1", "party": "t-101", "party_role": "head_teacher",
                                  "term": "2025-2026-2"}, occurred_at="2026-03-04T10:00:00+08:00")
        d.set_time("2026-04-15T08:00:00+08:00")
        assert [e["data"]["hazard"] for e in d.events("hazard.overdue")] == ["hz-2"]
        a = q(d, "assessment", school="sch-001", **{"from": "2026-03-01", "to": "2026-03-31"})
        assert a["journal"] is True, a
        comp = {c["component"]: c for c in a["components"]}
        assert comp["inspections"]["rate"] is None, comp  # nothing was due
        assert (comp["hazards"]["done"], comp["hazards"]["expected"]) == (1, 2), comp
        assert (comp["drills"]["done"], comp["drills"]["expected"]) == (1, 1), comp
        assert (comp["education"]["done"], comp["education"]["expected"]) == (1, 1), comp
        # three head teachers (t-101 signed) and one teacher from the directory
        assert (comp["agreements"]["done"], comp["agreements"]["expected"]) == (1, 4), comp
        # weights 25/20/15/15 over the components with data: (12.5 + 20 + 15 + 3.75) / 75
        assert abs(a["score"] - 68.33) < 0.01, a
        people = {p[0]: p for p in a["people"]}
        assert people["t-101"][3:6] == [1, 0, 1] and people["t-101"][9] == 1, people
        assert people["t-102"][3:6] == [1, 1, 0], people
        assert people["p-safety"][6] == 1, people
        dist = q(d, "assessment", district="dist-01", **{"from": "2026-03-01", "to": "2026-03-31"})
        assert [s[0] for s in dist["schools"]] == ["sch-001", "sch-002"], dist
        assert abs(dist["schools"][0][2] - 68.33) < 0.01, dist


def replay_term(d):
    """Sends the scripted month, moving the clock to each event as it comes."""
    d.ok("directory.district.upserted", {"district": "d-01", "name": "Lake District"}, school=None,
         district="d-01")
    with open(FIXTURE, encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    now = None
    for e in events:
        if now is None or e["occurred_at"] > now:
            d.set_time(e["occurred_at"])
            now = e["occurred_at"]
        r = d.send_raw(json.dumps(e))
        assert r["ok"], (e, r)


def test_export_of_a_scripted_month():
    out = tempfile.mkdtemp(prefix="sc-ledger-export-")
    try:
        with Daemon("lg-export", plugins=[PLUGIN, "hazard_tracker"],
                    clock="2026-02-20T07:00:00+08:00") as d:
            replay_term(d)
            # a hazard with its whole history, and one of the other school
            at(d, "2026-03-16T09:00:00+08:00", "hazard.reported",
               {"hazard": "hz-1", "title": "loose handrail, stair B", "risk": "general"}, actor="p-002")
            d.ok("hazard.assigned", {"hazard": "hz-1", "assignee": "t-1"}, actor="p-002")
            at(d, "2026-03-17T09:00:00+08:00", "hazard.rectified",
               {"hazard": "hz-1", "by": "t-1", "measures": "bolted"})
            d.ok("hazard.verified", {"hazard": "hz-1", "by": "p-002", "passed": True})
            d.ok("hazard.reported", {"hazard": "hz-901", "title": "OTHER-SCHOOL hazard",
                                     "risk": "general"}, school="sch-002")
            d.set_time("2026-04-01T12:00:00+08:00")
            assert [e["data"]["visit"] for e in emitted(d, "gate.overstay")] == ["v-2"]

            args = ["ledger", "--school", "sch-001", "--from", "2026-03-01", "--to", "2026-03-31",
                    "--out", out, "--page", "2"]
            r = d.ctl(*args, "--format", "json")
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "ledger-sch-001-2026-03-01-2026-03-31.json"),
                      encoding="utf-8") as f:
                doc = json.load(f)
            keys = [(s["key"], s["plugin"], len(s["rows"])) for s in doc["sections"]]
            assert keys == [
                ("leadership", "ledger", 3), ("agreements", "ledger", 4),
                ("agreement_shares", "ledger", 3), ("agreements_unsigned", "ledger", 3),
                ("rules", "ledger", 2), ("hazards", "hazard_tracker", 1),
                ("drills", "ledger", 1), ("drill_months", "ledger", 1), ("education", "ledger", 3),
                ("meetings", "ledger", 1), ("outings", "ledger", 2), ("gate_visitors", "ledger", 2),
                ("gate_cards", "ledger", 1), ("assessment", "ledger", 6),
                ("assessment_people", "ledger", 4),
            ], keys
            assert all(s["count"] == len(s["rows"]) for s in doc["sections"])
            hz = next(s for s in doc["sections"] if s["key"] == "hazards")
            row = dict(zip(hz["columns"], hz["rows"][0]))
            assert row["hazard"] == "hz-1" and row["assignee"] == "t-1", row
            assert row["rectified_by"] == "t-1" and row["verified_by"] == "p-002", row
            assert row["status"] == "closed", row
            text = json.dumps(doc, ensure_ascii=False)
            assert "OTHER-SCHOOL" not in text and "hz-901" not in text
            assert "stair B congested" in text

            r = d.ctl(*args, "--format", "html")
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "ledger-sch-001-2026-03-01-2026-03-31.html"),
                      encoding="utf-8") as f:
                html = f.read()
            assert "@page{size:A4" in html and "新桥小学" in html
            order = [html.index(h) for h in ("安全工作领导小组", "隐患排查与整改", "消防与疏散演练",
                                              "集体外出活动", "年度安全考核")]
            assert order == sorted(order), order
            assert "loose handrail, stair B" in html and "OTHER-SCHOOL" not in html
            assert html.count('<section id="s') == 15

            r = d.ctl(*args, "--format", "csv")
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "index.csv"), encoding="utf-8-sig", newline="") as f:
                index = list(csv.DictReader(f))
            assert [(i["key"], int(i["rows"])) for i in index] == [(k, n) for k, _, n in keys]
            with open(os.path.join(out, index[5]["file"]), encoding="utf-8-sig", newline="") as f:
                rows = list(csv.reader(f))
            assert rows[0][:2] == ["hazard", "found_at"] and rows[1][0] == "hz-1", rows

            r = d.ctl("ledger", "--district", "d-01", "--from", "2026-03-01", "--to", "2026-03-31",
                      "--format", "json", "--out", out)
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "ledger-d-01-2026-03-01-2026-03-31.json"),
                      encoding="utf-8") as f:
                dist = json.load(f)
            assert [s["key"] for s in dist["sections"]] == ["district_summary"], dist
            assert [r[0] for r in dist["sections"][0]["rows"]] == ["sch-001", "sch-002"], dist

            r = d.ctl("ledger", "--school", "sch-001", "--from", "2026-03-31", "--to", "2026-03-01")
            assert r.returncode == 2 and "--to: must not be before --from" in r.stderr, r
    finally:
        shutil.rmtree(out, ignore_errors=True)


# The plan's order, as safecampusctl ranks sections by the start of their key.
RANKS = [("district", 5), ("leadership", 10), ("agreement", 20), ("rule", 30), ("inspection", 40),
         ("hazard", 50), ("drill", 60), ("education", 70), ("meeting", 80), ("incident", 90),
         ("alert", 90), ("alarm", 90), ("health", 100), ("outing", 110), ("gate", 120),
         ("assessment", 130)]


def rank(key):
    return next((r for p, r in RANKS if key.startswith(p)), 125)


def test_export_with_every_plugin():
    """Every plugin built answers the ledger; the export merges them in the plan's order."""
    built = [p for p in ("ledger", "hazard_tracker", "incident_escalation", "health_absence",
                         "inspection_scheduler", "notify")
             if os.path.exists(os.path.join(TOP, "build", "plugins", p + ".so"))]
    out = tempfile.mkdtemp(prefix="sc-ledger-all-")
    try:
        with Daemon("lg-all", plugins=built, clock="2026-02-20T07:00:00+08:00") as d:
            replay_term(d)
            d.set_time("2026-04-01T12:00:00+08:00")
            r = d.ctl("ledger", "--school", "sch-001", "--from", "2026-03-01", "--to", "2026-03-31",
                      "--format", "json", "--out", out)
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "ledger-sch-001-2026-03-01-2026-03-31.json"),
                      encoding="utf-8") as f:
                doc = json.load(f)
            keys = [s["key"] for s in doc["sections"]]
            assert sorted({s["plugin"] for s in doc["sections"]}) == sorted(built), keys
            ranks = [rank(k) for k in keys]
            assert ranks == sorted(ranks), keys
            assert keys[0] == "leadership" and keys[-1] == "assessment_people", keys
            assert "OTHER-SCHOOL" not in json.dumps(doc, ensure_ascii=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main(globals())
