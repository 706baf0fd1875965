"""health_absence through the real daemon on the manual clock: tracing deadline, clusters raised once,
inhibition, daily report and district roll-up, retention, refusals and queries."""

from harness import Daemon, main

PLUGIN = "health_absence"

# The harness starts the clock at 2026-06-15T07:00:00+08:00, a Monday, in Asia/Shanghai:
# the default tracing cut-off (17:00 local) is 09:00Z and the daily report (18:00) 10:00Z.
TODAY = "2026-06-15"

FEVER = ["fever"]
ILI = ["fever", "cough"]


def daemon(name, config=""):
    return Daemon(name, plugins=[PLUGIN], config=config)


def absent(d, student, klass="c-1a", date=TODAY, reason="illness", **extra):
    data = {"student": student, "class": klass, "date": date, "reason": reason}
    data.update(extra)
    return d.ok("health.absence.reported", data, actor="t-101")


def emitted(d, type, after=0):
    """Events of `type` the plugin raised, in journal order (after a sync)."""
    d.sync()
    return [e for e in d.events(type, after=after) if e["source"] == PLUGIN]


def utc(ts):
    return ts.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_tracing_deadline():
    with daemon("ha-trace") as d:
        d.directory()
        absent(d, "st-001", symptoms=FEVER)
        absent(d, "st-002")
        absent(d, "st-003", diagnosis="otitis media")  # the cause is known: nothing to trace
        absent(d, "st-004", reason="personal")
        d.set_time("2026-06-15T12:00:00+08:00")
        d.ok("health.absence.traced", {"student": "st-002", "date": TODAY,
                                       "diagnosis": "common cold", "by": "p-doctor"})
        d.set_time("2026-06-15T16:59:00+08:00")
        assert emitted(d, "health.absence.untraced") == []
        d.set_time("2026-06-15T17:00:00+08:00")
        un = emitted(d, "health.absence.untraced")
        assert [e["data"]["student"] for e in un] == ["st-001"], un
        assert utc(un[0]["occurred_at"]) == "2026-06-15T09:00:00Z", un[0]
        assert un[0]["school"] == "sch-001" and un[0]["data"]["class"] == "c-1a", un[0]
        # Days later, still once; and late tracing is still recorded.
        d.set_time("2026-06-17T20:00:00+08:00")
        assert len(emitted(d, "health.absence.untraced")) == 1
        d.ok("health.absence.traced", {"student": "st-001", "date": TODAY,
                                       "diagnosis": "influenza", "by": "p-doctor"})
        d.sync()
        day = d.query(PLUGIN, "day", school="sch-001", date=TODAY)
        assert day["ok"], day
        st1 = [a for a in day["absent"] if a["student"] == "st-001"][0]
        assert st1["diagnosis"] == "influenza" and st1["untraced"] is True, st1
        assert day["untraced"] == [], day["untraced"]


def test_tracing_deadline_survives_a_restart():
    with daemon("ha-restart") as d:
        d.directory()
        absent(d, "st-001", symptoms=FEVER)
        d.set_time("2026-06-15T12:00:00+08:00")
        d.restart()
        d.set_time("2026-06-15T18:30:00+08:00")
        un = emitted(d, "health.absence.untraced")
        assert [(e["data"]["student"], utc(e["occurred_at"])) for e in un] == \
            [("st-001", "2026-06-15T09:00:00Z")], un
        assert len(emitted(d, "health.report.daily")) == 1


def test_bad_input():
    with daemon("ha-bad") as d:
        d.directory()
        r = d.send("health.absence.reported", {"student": "st-001", "class": "c-1a", "date": TODAY,
                                               "reason": "illness", "symptoms": ["fever", "sneezing"]})
        assert not r["ok"] and r["error"] == "invalid_event", r
        assert r["detail"].startswith("data.symptoms[1]: must be one of fever,"), r
        r = d.send("health.absence.reported", {"student": "st-001", "name": "Wang Xiaoming",
                                               "class": "c-1a", "date": TODAY, "reason": "illness"})
        assert not r["ok"] and r["detail"].startswith("data.name: pupils are codes only"), r
        r = d.send("health.absence.untraced", {"student": "st-001", "class": "c-1a", "date": TODAY})
        assert not r["ok"], r  # only the plugin raises it
        # Accepted by ingest (validators cannot read the clock), refused by the plugin.
        future = absent(d, "st-001", date="2026-06-16")
        ghost = d.ok("health.absence.traced", {"student": "st-404", "date": TODAY,
                                               "diagnosis": "cold", "by": "p-doctor"})
        rej = {e["data"]["event"]: e["data"]["reason"] for e in emitted(d, "health.rejected")}
        assert set(rej) == {future, ghost}, rej
        assert "in the future" in rej[future], rej
        assert rej[ghost] == "no absence of st-404 on 2026-06-15 is registered", rej
        assert d.query(PLUGIN, "day", school="sch-001", date="2026-06-16")["absent"] == []


def test_clusters_raised_once():
    with daemon("ha-once") as d:
        d.directory()
        for s in ("st-001", "st-002", "st-003"):
            absent(d, s, symptoms=FEVER, diagnosis="fever")
        cl = emitted(d, "health.cluster.suspected")
        assert len(cl) == 1, cl
        data = cl[0]["data"]
        assert data["rule"] == "class_day" and data["class"] == "c-1a", data
        assert data["syndrome"] == "fever" and data["cases"] == 3 and data["window_days"] == 1, data
        assert sorted(data["students"]) == ["st-001", "st-002", "st-003"], data
        # Further cases, the next day too (which also meets the 5-in-3-days rule): no new alert.
        absent(d, "st-004", symptoms=FEVER, diagnosis="fever")
        d.set_time("2026-06-16T09:00:00+08:00")
        absent(d, "st-005", date="2026-06-16", symptoms=FEVER, diagnosis="fever")
        assert len(emitted(d, "health.cluster.suspected")) == 1
        q = d.query(PLUGIN, "clusters", school="sch-001")
        assert q["ok"] and len(q["clusters"]) == 1, q
        assert q["clusters"][0]["cases"] == 5 and q["clusters"][0]["last_date"] == "2026-06-16", q
        # A suspected infectious case is its own alert, at once.
        absent(d, "st-011", klass="c-1b", date="2026-06-16", symptoms=["rash", "fever"],
               suspected_disease="measles")
        cases = emitted(d, "health.case.suspected")
        assert [(e["data"]["student"], e["data"]["disease"]) for e in cases] == \
            [("st-011", "measles")], cases


def test_school_cluster_inhibits_class_alerts():
    with daemon("ha-inhibit") as d:
        d.directory()
        d.set_time("2026-06-18T09:00:00+08:00")  # Thursday
        # 10 ILI cases across the school in a week, never 3 in one class on a day.
        plan = [("2026-06-12", "c-1a"), ("2026-06-12", "c-1b"), ("2026-06-15", "c-2a"),
                ("2026-06-15", "c-1a"), ("2026-06-16", "c-1b"), ("2026-06-16", "c-2a"),
                ("2026-06-17", "c-1a"), ("2026-06-17", "c-1b"), ("2026-06-18", "c-2a"),
                ("2026-06-18", "c-1a")]
        for i, (date, klass) in enumerate(plan, 1):
            absent(d, "st-%03d" % i, klass=klass, date=date, symptoms=ILI, diagnosis="flu")
        cl = emitted(d, "health.cluster.suspected")
        assert len(cl) == 1 and cl[0]["data"]["rule"] == "ili_school", cl
        assert cl[0]["data"]["scope"] == "school" and cl[0]["data"]["cases"] == 10, cl
        # Two more ILI cases in c-1a today make three there: inside the school cluster, no alert.
        absent(d, "st-021", klass="c-1a", date="2026-06-18", symptoms=ILI, diagnosis="flu")
        absent(d, "st-022", klass="c-1a", date="2026-06-18", symptoms=ILI, diagnosis="flu")
        assert len(emitted(d, "health.cluster.suspected")) == 1
        q = d.query(PLUGIN, "clusters", school="sch-001")
        by_scope = {c["scope"]: c for c in q["clusters"]}
        assert by_scope["class"]["alerted"] is False, by_scope
        assert by_scope["class"]["inhibited_by"] == by_scope["school"]["cluster"], by_scope
        assert by_scope["school"]["cases"] == 12, by_scope


def test_daily_report_and_district_rollup():
    with daemon("ha-report") as d:
        d.directory()
        d.ok("health.morning_check", {"date": TODAY, "class": "c-1a", "present": 9, "absent": 1,
                                      "symptomatic": 1})
        absent(d, "st-001", symptoms=ILI)
        absent(d, "st-011", klass="c-1b", reason="personal")
        d.set_time("2026-06-15T17:59:00+08:00")
        assert emitted(d, "health.report.daily") == []
        d.set_time("2026-06-15T18:00:00+08:00")
        rep = emitted(d, "health.report.daily")
        assert len(rep) == 1, rep
        r = rep[0]
        assert r["school"] == "sch-001" and utc(r["occurred_at"]) == "2026-06-15T10:00:00Z", r
        data = r["data"]
        assert data["date"] == TODAY and data["absences"] == 2, data
        assert data["by_reason"] == {"illness": 1, "personal": 1, "unknown": 0}, data
        assert data["by_syndrome"]["ili"] == 1 and data["by_syndrome"]["respiratory"] == 1, data
        assert [u["student"] for u in data["untraced"]] == ["st-001"], data
        assert {c["class"] for c in data["by_class"]} == {"c-1a", "c-1b"}, data
        roll = emitted(d, "health.report.district")
        assert len(roll) == 1 and roll[0]["district"] == "dist-01", roll
        schools = {s["school"]: s for s in roll[0]["data"]["schools"]}
        assert set(schools) == {"sch-001", "sch-002"}, schools
        assert schools["sch-001"]["absences"] == 2 and schools["sch-002"]["checked"] is False, schools
        # The same roll-up on demand, and a quiet weekend: Tuesday to Friday only.
        q = d.query(PLUGIN, "district_day", district="dist-01", date=TODAY)
        assert q["ok"] and q["totals"]["absences"] == 2, q
        d.set_time("2026-06-21T22:00:00+08:00")
        dates = [e["data"]["date"] for e in emitted(d, "health.report.daily")]
        assert dates == [TODAY, "2026-06-16", "2026-06-17", "2026-06-18", "2026-06-19"], dates


def test_retention():
    with daemon("ha-retain", config='health_absence: { retention = "30d"; };') as d:
        d.directory()
        absent(d, "st-001", date="2026-05-06", symptoms=FEVER, diagnosis="flu", note="mother called")
        absent(d, "st-002", date="2026-06-12", diagnosis="flu")
        d.set_time("2026-06-16T02:59:00+08:00")
        assert d.sql("SELECT count(*) AS n FROM health.retention_runs")[0]["n"] == 0
        d.set_time("2026-06-16T03:00:00+08:00")
        runs = d.sql("SELECT mode, absences, cutoff::text AS cutoff FROM health.retention_runs")
        assert runs == [{"mode": "anonymise", "absences": 1, "cutoff": "2026-05-17"}], runs
        old = d.query(PLUGIN, "day", school="sch-001", date="2026-05-06")["absent"]
        assert [(a["student"], a["diagnosis"], a["symptoms"]) for a in old] == \
            [("(anonymised)", None, ["fever"])], old
        new = d.query(PLUGIN, "day", school="sch-001", date="2026-06-12")["absent"]
        assert [a["student"] for a in new] == ["st-002"], new
        assert "retention: anonymised records dated before 2026-05-17: 1 absences" in d.log(), \
            d.log()[-2000:]


def test_ledger_and_figures():
    with daemon("ha-ledger") as d:
        d.directory()
        d.ok("health.morning_check", {"date": TODAY, "class": "c-1a", "present": 9, "absent": 1})
        for s in ("st-001", "st-002", "st-003"):
            absent(d, s, symptoms=["diarrhea"], diagnosis="gastroenteritis")
        d.sync()
        q = d.query(PLUGIN, "ledger", school="sch-001", **{"from": "2026-06-01", "to": "2026-06-30"})
        assert q["ok"] and q["next"] is None, q
        keys = [s["key"] for s in q["sections"]]
        assert keys == ["health_morning_checks", "health_absences", "health_clusters",
                        "health_aberrations"], keys
        rows = {s["key"]: s for s in q["sections"]}
        ab = rows["health_absences"]
        assert len(ab["rows"]) == 3 and ab["columns"][:3] == ["date", "student", "class"], ab
        assert len(rows["health_clusters"]["rows"]) == 1, rows["health_clusters"]
        f = d.query(PLUGIN, "figures", district="dist-01", **{"from": "2026-01-01", "to": "2026-12-31"})
        assert f["ok"] and f["absences"] == 3 and f["clusters"] == 1, f
        bad = d.query(PLUGIN, "nonsense")
        assert bad["ok"] is False and bad["error"].startswith("what: must be one of"), bad


if __name__ == "__main__":
    main(globals())
