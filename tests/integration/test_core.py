"""The core's guarantees, through the real daemon, real PostgreSQL and real ZeroMQ.

Written in Python on purpose: the wire contract is exercised from outside the C code.
"""

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

import psycopg2
import zmq

from harness import CTL, DAEMON, TOP, Daemon, main, pg_params

PROBE_VERSIONS = [1, 2]  # tests/plugins/probe.c
CORE_VERSIONS = sorted(int(f.split("_")[0]) for f in os.listdir(os.path.join(TOP, "daemon", "sql"))
                       if f.endswith(".sql"))


def test_ack_after_commit_and_duplicates():
    with Daemon("ack") as d:
        r = d.send("probe.event", {"n": 1}, id="e-1")
        assert r == {"ok": True, "event": r["event"], "duplicate": False, "id": "e-1"}, r
        # Acked means committed: another connection sees it at once.
        rows = d.events("probe.event")
        assert [x["source_id"] for x in rows] == ["e-1"], rows
        again = d.send("probe.event", {"n": 1}, id="e-1")
        assert again["ok"] and again["duplicate"] and again["event"] == r["event"], again
        # The same key from another source is another event.
        other = d.send("probe.event", {"n": 1}, id="e-1", source="other-system")
        assert other["ok"] and not other["duplicate"] and other["event"] != r["event"]
        # Pipelined, with resends inside one batch: one row each, the original number each time.
        envs = [d.envelope("probe.event", {"n": i}, id="p-%d" % i) for i in range(400)]
        envs += [d.envelope("probe.event", {"n": i}, id="p-%d" % i) for i in range(0, 400, 7)]
        replies = d.send_many(envs)
        assert all(x["ok"] for x in replies), [x for x in replies if not x["ok"]][:3]
        first = {}
        for x in replies:
            first.setdefault(x["id"], x["event"])
            assert x["event"] == first[x["id"]], x
        assert sum(1 for x in replies if x["duplicate"]) == len(range(0, 400, 7))
        counts = d.sql("SELECT count(*) AS n, count(DISTINCT source_id) AS k FROM core.events"
                       " WHERE type = 'probe.event' AND source = 'test'")[0]
        assert counts == {"n": 401, "k": 401}, counts
        d.sync()
        handled = d.query("probe", "count")
        assert handled["handled"] == handled["distinct_events"] == 402, handled
        stats = d.request({"cmd": "stats"})
        assert stats["duplicates"] == 1 + len(range(0, 400, 7)), stats


def test_stats_tell_how_long_events_waited_and_the_journal_took():
    # An operator asking why acks are slow: the time each acked event spent in the daemon,
    # and each batch in the database, as histograms a reader can subtract between replies.
    with Daemon("latency") as d:
        first = d.request({"cmd": "stats"})
        before = first["latency"]
        assert before["in_daemon"]["count"] == first["acked"], first
        for i in range(20):
            assert d.send("probe.event", {"n": i}, id="one-%d" % i)["ok"]
        replies = d.send_many([d.envelope("probe.event", {"n": i}, id="many-%d" % i)
                               for i in range(300)])
        assert all(x["ok"] for x in replies)
        refused = d.send("probe.event", {"n": "x"}, id="bad", occurred_at="yesterday")
        assert not refused["ok"], refused
        stats = d.request({"cmd": "stats"})
        lat = stats["latency"]
        # Acked events only, each once; one answer a batch.
        assert stats["acked"] - first["acked"] == 320, stats
        assert lat["in_daemon"]["count"] == stats["acked"], (lat["in_daemon"], stats)
        assert lat["journal"]["count"] == stats["batches"], (lat["journal"], stats)
        assert lat["journal"]["count"] > before["journal"]["count"], lat
        for name in ("in_daemon", "journal"):
            h = lat[name]
            uppers = [b[0] for b in h["buckets"]]
            assert uppers == sorted(set(uppers)), h
            assert sum(b[1] for b in h["buckets"]) == h["count"], h
            assert 0 < h["p50_ms"] <= h["p99_ms"] <= h["p999_ms"], h
            # Nothing here takes a minute: the values are microseconds, reported in ms.
            assert h["p999_ms"] < 60000, h
        # An event waits in the daemon at least as long as the database took for it.
        assert lat["in_daemon"]["p999_ms"] >= lat["journal"]["p50_ms"], lat



def test_an_event_alone_is_journaled_as_the_function_would():
    # An event alone whose district the daemon knows goes through the one-event statement
    # (daemon/journal.c), not core.journal_append: the same row, the same numbering, a resend
    # answered with the first number; one of a school the directory lacks goes to the function.
    with Daemon("alone") as d:
        d.directory()
        r = d.send("probe.event", {"n": 1}, id="a-1", actor="p-1")
        assert r["ok"] and not r["duplicate"], r
        again = d.send("probe.event", {"n": 1}, id="a-1", actor="p-1")
        assert again["ok"] and again["duplicate"] and again["event"] == r["event"], again
        later = d.send("probe.event", {"n": 2}, id="a-2")
        assert later["ok"] and not later["duplicate"] and later["event"] > r["event"], later
        unknown = d.send("probe.event", {"n": 3}, id="a-3", school="sch-999")
        assert unknown["ok"] and unknown["event"] > later["event"], unknown
        rows = {x["source_id"]: x for x in d.events("probe.event")}
        assert sorted(rows) == ["a-1", "a-2", "a-3"], rows
        one = rows["a-1"]
        assert (one["id"], one["school"], one["district"], one["source"], one["actor"]) == (
            r["event"], "sch-001", "dist-01", "test", "p-1"), one
        assert one["data"] == {"n": 1}, one
        assert rows["a-2"]["actor"] is None and rows["a-3"]["district"] is None, rows

def test_journal_append_numbers_a_mixed_batch_in_input_order():
    # The journal's one entry point, called as the writer calls it: new rows, a resend of an
    # event already journaled, a row repeated later in the batch, rows without a key.
    with Daemon("append") as d:
        d.directory()
        old = d.send("probe.event", {"n": 0}, id="k-old")["event"]
        call = ("SELECT event, duplicate FROM core.journal_append(%s::text[], %s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[],"
                " %s::text[], %s::jsonb[])")

        def append(keys):
            n = len(keys)
            now = ["2026-06-18T08:00:00+08:00"] * n
            return d.sql(call, (["probe.event"] * n, ["sch-001"] * n, [None] * n, ["sql"] * n,
                                keys, now, now, [None] * n, ['{"n": 1}'] * n))

        first = append(["k-old"])  # the sender's key, from another source: another event
        assert not first[0]["duplicate"] and first[0]["event"] > old, first
        rows = append(["a", None, "a", "b", None])
        new = [r["event"] for r in rows if not r["duplicate"]]
        assert [r["duplicate"] for r in rows] == [False, False, True, False, False], rows
        assert new == sorted(new) and len(set(new)) == 4 and new[0] > old, rows
        assert rows[2]["event"] == rows[0]["event"], rows
        again = append(["b", "c", "a"])
        assert [r["duplicate"] for r in again] == [True, False, True], again
        assert again[0]["event"] == rows[3]["event"] and again[2]["event"] == rows[0]["event"]
        assert again[1]["event"] > max(new)
        assert append([]) == []
        journal = d.sql("SELECT id, source_id, district FROM core.events WHERE source = 'sql'"
                        " ORDER BY id")
        assert [j["source_id"] for j in journal] == ["k-old", "a", None, "b", None, "c"], journal
        assert {j["district"] for j in journal} == {"dist-01"}, journal


def test_every_refusal_code():
    with Daemon("refusals") as d:
        cases = [
            (b"{not json", "malformed_json", "frame:"),
            (b'{"type":"probe.event","school":"sch-001","source":"t","id":"u1","data":{"n":1,"s":"\xff\xfe"}}',
             "malformed_json", "UTF-8"),
            (json.dumps(d.envelope("probe.event", {"n": 1, "pad": "x" * 70000})).encode(), "too_large",
             "frame:"),
            (('{"type":"probe.event","school":"sch-001","source":"t","data":{"n":1,"deep":' + "[" * 40
              + "]" * 40 + "}}").encode(), "too_large", "nested"),
            (b"[1,2,3]", "invalid_event", "frame: expected a JSON object"),
            (json.dumps({"school": "sch-001", "source": "t", "data": {}}).encode(), "invalid_event",
             "type: required"),
            (json.dumps({"type": "Probe Event", "school": "sch-001", "source": "t", "data": {}}).encode(),
             "invalid_event", "type: must be"),
            (json.dumps({"type": "probe.event", "school": "sch-001", "data": {"n": 1}}).encode(),
             "invalid_event", "source: required"),
            (json.dumps({"type": "probe.event", "source": "t", "data": {"n": 1}}).encode(),
             "invalid_event", "school: required"),
            (json.dumps({"type": "probe.event", "school": "sch-001", "source": "t",
                         "occurred_at": "18/06/2026", "data": {"n": 1}}).encode(),
             "invalid_event", "occurred_at: expected an RFC 3339 time"),
            (json.dumps({"type": "probe.event", "school": "sch-001", "source": "t", "data": [1]}).encode(),
             "invalid_event", "data: expected an object"),
            (json.dumps({"type": "probe.event", "school": "sch-001", "source": "t", "data": {"n": "x"},
                         "id": "v1"}).encode(), "invalid_event", "data.n: expected an integer"),
            (json.dumps({"type": "probe.event", "school": "sch-001", "source": "t", "data": {"n": 1},
                         "colour": "red"}).encode(), "invalid_event", "colour: unknown field"),
            (json.dumps(d.envelope("probe.unheard_of", {})).encode(), "unknown_type", "not a known"),
            (json.dumps(d.envelope("probe.fired", {"name": "x"})).encode(), "forbidden", "raised by"),
        ]
        for frame, code, detail in cases:
            r = d.send_raw(frame)
            assert not r["ok"] and r["error"] == code and detail in r["detail"], (frame[:80], r)
        # The id is echoed whenever it could be read, also on refusals.
        r = d.send_raw(json.dumps({"type": "probe.event", "school": "sch-001", "source": "t",
                                   "id": "echo-me", "data": {"n": "x"}}))
        assert r["id"] == "echo-me", r
        # Nothing refused reached the journal or the plugin; the daemon still serves.
        assert d.events(prefix="probe.") == []
        assert d.send("probe.event", {"n": 1})["ok"]
        refused = d.request({"cmd": "stats"})["refused"]
        assert refused["malformed_json"] == 2 and refused["too_large"] == 2, refused
        assert refused["unknown_type"] == 1 and refused["forbidden"] == 1, refused


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_refused_frames_give_their_memory_back():
    """A frame is parsed into memory kept with the events waiting beside it for the journal;
    a refused one must give its share back at once. Here the journal is held (its lock taken
    from outside) with events waiting, while a sender is refused 1000 times: ~300 MB if the
    refused frames kept theirs. (Under AddressSanitizer, freed memory is held back for a while:
    a small quarantine keeps that apart from what is kept.)"""
    with Daemon("refused-memory", env={"ASAN_OPTIONS": "quarantine_size_mb=4"}) as d:
        data = {"n": 1}
        data.update(("k%04d" % i, "v") for i in range(3000))
        frame = json.dumps({"type": "probe.event", "school": "sch-001", "source": "t",
                            "data": data, "colour": "red"}).encode()
        wave = [frame] * 50
        for r in d.send_many(wave):
            assert r["error"] == "invalid_event" and "colour" in r["detail"], r
        held = psycopg2.connect(**pg_params(d.dbname))
        held.autocommit = True
        held.cursor().execute("SELECT pg_advisory_lock(7600002)")
        waiting = d.new_dealer()
        try:
            for i in range(2):  # one in the database, held; one waiting behind it
                waiting.send(json.dumps(d.envelope("probe.event", {"n": i}, id="held-%d" % i)).encode())
            before = _rss_kb(d.proc.pid)
            for _ in range(20):
                for r in d.send_many(wave):
                    assert r["error"] == "invalid_event", r
            grown = _rss_kb(d.proc.pid) - before
            assert not waiting.poll(0), "acked while the journal was held"
        finally:
            held.close()
        acks = []
        while len(acks) < 2 and waiting.poll(30000):
            acks.append(json.loads(waiting.recv()))
        waiting.close()
        assert sorted(a.get("id") for a in acks if a.get("ok")) == ["held-0", "held-1"], acks
        assert grown < 40000, "the daemon grew by %d kB over 1000 refused frames" % grown


def test_failing_plugin_dead_letters_and_goes_on():
    with Daemon("deadletter") as d:
        bad = d.ok("probe.fail", {"mode": "permanent", "times": 100})
        flaky = d.ok("probe.fail", {"mode": "transient", "times": 2})
        after = d.ok("probe.event", {"n": 7})
        d.sync()
        dead = d.sql("SELECT plugin, event, attempts, error FROM core.dead_letters")
        assert len(dead) == 1 and dead[0]["event"] == bad and dead[0]["attempts"] == 3, dead
        assert "failing event" in dead[0]["error"] and "-5" in dead[0]["error"], dead
        handled = [r["event"] for r in d.sql("SELECT event FROM probe.handled ORDER BY event")]
        assert handled == [flaky, after], handled
        p = d.plugin("probe")
        assert p["dead_letters"] == 1 and p["retried"] >= 4 and p["lag"] == 0, p

        def failing_in_a_batch(mode, count, at, after):
            # count events pipelined with a failing one at `at`: the others are handled once
            # each, the one at fault is the newest dead letter. Returns the last number.
            envs = [d.envelope("probe.event", {"n": i}) for i in range(count)]
            envs.insert(at, d.envelope("probe.fail", {"mode": mode, "times": 100}))
            replies = d.send_many(envs)
            d.sync()
            rows = d.sql("SELECT event, count(*) AS n FROM probe.handled WHERE event > %s"
                         " GROUP BY event", [after])
            assert len(rows) == count and all(r["n"] == 1 for r in rows), rows
            dead = [r["event"] for r in d.sql("SELECT event FROM core.dead_letters ORDER BY id")]
            assert dead[-1] == replies[at]["event"], dead
            return max(r["event"] for r in replies)

        # A failure in the middle of a batch: the events before it are run again without it.
        after = failing_in_a_batch("permanent", 20, 10, after)
        # Deferred writes failing at the batch's end (end_batch): the batch is halved until
        # the event at fault stands alone.
        failing_in_a_batch("at_end", 40, 25, after)
        assert d.sql("SELECT count(*) AS n FROM core.dead_letters")[0]["n"] == 3


def test_kill_9_mid_stream_then_resend_loses_nothing_and_doubles_nothing():
    total = 3000
    with Daemon("kill9") as d:
        envs = [d.envelope("probe.event", {"n": i}, id="k-%d" % i) for i in range(total)]
        s = d.dealer()
        acked = {}
        for e in envs:
            s.send(json.dumps(e).encode())
        while len(acked) < total // 3:
            assert s.poll(30000)
            r = json.loads(s.recv())
            assert r["ok"], r
            acked[r["id"]] = r["event"]
        d.kill()
        d.start()
        # Resend everything not acked, then everything once more: the acked keep their numbers.
        replies = d.send_many([e for e in envs if e["id"] not in acked] + envs)
        assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
        for r in replies:
            if r["id"] in acked:
                assert r["duplicate"] and r["event"] == acked[r["id"]], r
        n = d.sql("SELECT count(*) AS n, count(DISTINCT source_id) AS k FROM core.events"
                  " WHERE type = 'probe.event'")[0]
        assert n == {"n": total, "k": total}, n
        d.sync()
        h = d.query("probe", "count")
        assert h["handled"] == h["distinct_events"] == total, h



def _resend_until_journaled(d, acked, sent, prefix):
    """Resends every probe event not acked yet (ids prefix-0 … prefix-<sent-1>, data {"n": i})
    until all are, then checks the journal holds each once, under the number it was acked with."""
    deadline = time.time() + 60
    while len(acked) < sent and time.time() < deadline:
        for i in range(sent):
            key = "%s-%d" % (prefix, i)
            if key not in acked:
                r = d.send_raw(json.dumps(d.envelope("probe.event", {"n": i}, id=key)))
                if r["ok"]:
                    acked[key] = r["event"]
        time.sleep(0.2)
    assert len(acked) == sent, (len(acked), sent)
    rows = d.sql("SELECT source_id, id FROM core.events WHERE type = 'probe.event'")
    assert {r["source_id"]: r["id"] for r in rows} == acked


def test_postgresql_outage_is_ridden_out():
    cluster = os.path.join(TOP, ".pg", "outage-%d" % os.getpid())
    pg = os.path.join(TOP, "scripts", "pg")
    env_lines = subprocess.run([pg, "start", cluster, "--fast"], capture_output=True, text=True,
                               check=True).stdout
    env = dict(line.split("=", 1) for line in env_lines.splitlines() if "=" in line and
               not line.startswith("export") and not line.startswith("SC_"))
    saved = {k: os.environ.get(k) for k in ("SC_TEST_PGHOST", "SC_TEST_PGPORT")}
    os.environ["SC_TEST_PGHOST"], os.environ["SC_TEST_PGPORT"] = env["PGHOST"], env["PGPORT"]
    try:
        with Daemon("outage") as d:
            acked, unavailable = {}, 0
            sent = 0
            for phase in ("before", "down", "after"):
                if phase == "down":
                    subprocess.run([pg, "stop", cluster, "--immediate"], check=True,
                                   capture_output=True)
                if phase == "after":
                    subprocess.run([pg, "start", cluster, "--fast"], check=True, capture_output=True)
                for _ in range(200):
                    e = d.envelope("probe.event", {"n": sent}, id="o-%d" % sent)
                    sent += 1
                    r = d.send_raw(json.dumps(e))
                    if r["ok"]:
                        acked[r["id"]] = r["event"]
                    else:
                        assert r["error"] == "unavailable" and r["id"] == e["id"], r
                        unavailable += 1
                if phase == "down":
                    assert unavailable > 0
            _resend_until_journaled(d, acked, sent, "o")
            d.sync()
            h = d.query("probe", "count")
            assert h["handled"] == h["distinct_events"] == sent, h
            assert d.request({"cmd": "status"})["database"] == "up"
    finally:
        for k, v in saved.items():
            os.environ[k] = v
        subprocess.run([pg, "destroy", cluster], capture_output=True)


class _Gate:
    """A TCP relay to the test cluster that can turn into a black hole: it then drops every
    connection it relays and holds new ones open without a word, as a database host behind a
    failed network does (no refusal: a connection attempt just hangs)."""

    def __init__(self, port):
        self.upstream = ("127.0.0.1", int(port))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.silent = False
        self.relayed, self.held = [], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.silent:
                    self.held.append(c)
                    continue
                u = socket.create_connection(self.upstream)
                self.relayed += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [])
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return

    @staticmethod
    def _drop(socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def go_silent(self):
        with self.lock:
            self.silent = True
            self._drop(self.relayed)
            self.relayed = []

    def restore(self, drop_held=True):
        """Relays new connections again; those held stay silent unless dropped."""
        with self.lock:
            self.silent = False
            if drop_held:
                self._drop(self.held)
                self.held = []

    def close(self):
        self.listener.close()
        self.restore()
        self._drop(self.relayed)


def test_a_silent_database_host_never_stalls_intake():
    # While the journal's new connection hangs (the host neither answers nor refuses), every
    # sender is still answered at once, unavailable. When the host answers again, the attempt
    # that hangs is given up after its 10 s and the next one gets through: everything resent
    # is journaled exactly once.
    gate = _Gate(os.environ["SC_TEST_PGPORT"])

    class Gated(Daemon):
        @property
        def conninfo(self):
            return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (gate.port, self.dbname)

    try:
        with Gated("silent") as d:
            acked, sent = {}, 0

            def send_one(timeout):
                nonlocal sent
                key = "s-%d" % sent
                t0 = time.time()
                r = d.send_raw(json.dumps(d.envelope("probe.event", {"n": sent}, id=key)),
                               timeout=timeout)
                sent += 1
                if r["ok"]:
                    acked[key] = r["event"]
                else:
                    assert r["error"] == "unavailable" and r["id"] == key, r
                return r, time.time() - t0

            for _ in range(20):
                assert send_one(5)[0]["ok"]
            gate.go_silent()
            # The lost connection shows at the next batch; the new one hangs from then on.
            waits, unavailable = [], 0
            t_end = time.time() + 3
            while time.time() < t_end:
                r, took = send_one(2)
                waits.append(took)
                unavailable += not r["ok"]
                time.sleep(0.02)
            assert unavailable >= len(waits) - 1, (unavailable, len(waits))
            assert max(waits) < 1.0, max(waits)
            assert d.request({"cmd": "status"})["database"] == "down"
            gate.restore(drop_held=False)
            _resend_until_journaled(d, acked, sent, "s")
    finally:
        gate.close()


def test_slow_plugin_does_not_stall_another_or_ingest():
    with Daemon("slow", plugins=["probe", "sloth"], config="sloth: { delay_ms = 400; };") as d:
        slow = [d.envelope("sloth.event", {"n": i}) for i in range(10)]
        fast = [d.envelope("probe.event", {"n": i}) for i in range(300)]
        replies = d.send_many(slow + fast)
        assert all(r["ok"] for r in replies)
        # Every ack came back while the slow plugin still had most of its 4 s of work ahead.
        assert d.plugin("sloth")["handled"] < 10
        deadline = time.time() + 30
        while d.plugin("probe")["handled"] < 300 and time.time() < deadline:
            time.sleep(0.02)
        probe, sloth = d.plugin("probe"), d.plugin("sloth")
        assert probe["handled"] == 300, probe
        assert sloth["handled"] < 10, sloth
        d.sync()
        assert d.plugin("sloth")["handled"] == 10


def test_a_trickle_of_events_shares_transactions():
    # Events sent one at a time, each waiting for its ack: the first is handled at once, the
    # rest of the trickle waits out plugins.pace and goes in one transaction, not one each.
    # With ticks an hour apart, only the ingest thread's wake-ups can get the runner going: a
    # runner woken once while it waits is still woken for what comes after its batch.
    hour = "tick_interval = 3600;"
    with Daemon("pace", manual=False, plugin_settings="pace = 400;", clock_settings=hour) as d:
        d.ok("probe.event", {"n": 0})
        deadline = time.time() + 10
        while d.plugin("probe")["handled"] < 1 and time.time() < deadline:
            time.sleep(0.005)
        for i in range(1, 30):
            d.ok("probe.event", {"n": i})
        while d.plugin("probe")["handled"] < 30 and time.time() < deadline:
            time.sleep(0.02)
        probe = d.plugin("probe")
        assert probe["handled"] == 30, probe
        assert probe["batches"] <= 4, probe  # without pacing: about one per event
    with Daemon("nopace", manual=False, plugin_settings="pace = 0;", clock_settings=hour) as d:
        for i in range(30):
            d.ok("probe.event", {"n": i})
            deadline = time.time() + 10
            while d.plugin("probe")["handled"] < i + 1 and time.time() < deadline:
                time.sleep(0.002)
        assert d.plugin("probe")["batches"] == 30, d.plugin("probe")


def test_a_resend_leaves_the_plugins_reading_from_memory():
    # A resend alone in its batch draws a number nobody can place. The journal's tail leaves
    # just that number to the database and keeps what it holds: a runner still behind it (here
    # waiting out plugins.pace) takes the events before and after it from memory. (The tail
    # had started over after such a number, and the runner read the events before it back.)
    hour = "tick_interval = 3600;"
    with Daemon("resend", manual=False, plugin_settings="pace = 1000;", clock_settings=hour) as d:
        d.directory()  # the school's district known: its events are kept in memory
        d.ok("probe.event", {"n": 0})  # handled at once; the runner then waits out its pace
        deadline = time.time() + 10
        while d.plugin("probe")["handled"] < 1 and time.time() < deadline:
            time.sleep(0.005)
        before = d.plugin("probe")
        first = d.envelope("probe.event", {"n": 1})
        assert d.send_raw(json.dumps(first))["ok"]
        d.ok("probe.event", {"n": 2})
        again = d.send_raw(json.dumps(first))
        assert again["ok"] and again["duplicate"], again
        d.ok("probe.event", {"n": 3})
        while d.plugin("probe")["handled"] < 4 and time.time() < deadline:
            time.sleep(0.02)
        after = d.plugin("probe")
        assert after["handled"] == 4, after
        assert after["from_tail"] - before["from_tail"] == 3, (before, after)
        assert after["from_journal"] == before["from_journal"], (before, after)


def test_plugins_yield_to_a_busy_intake():
    # ingest.busy = 1: intake is busy whenever a turn of it finds a message waiting at the
    # socket; with busy out of reach and queue_max = 4, whenever its queue is full and reading
    # pauses. While a pipelined stream keeps it so, the plugin leaves plugins.yield (here
    # longer than the test) between its batches; once the stream is journaled it catches up
    # at once.
    for settings, yield_ms in (("busy = 1;", 60000), ("busy = 1000000; queue_max = 4;", 60000),
                               ("busy = 1;", 0)):
        with Daemon("yield", manual=False, ingest_settings=settings,
                    plugin_settings="pace = 0; yield = %d;" % yield_ms) as d:
            replies = d.send_many([d.envelope("probe.event", {"n": i}) for i in range(3000)])
            assert all(r["ok"] for r in replies)
            deadline = time.time() + 30
            while d.plugin("probe")["handled"] < 3000 and time.time() < deadline:
                time.sleep(0.02)
            probe = d.plugin("probe")
            assert probe["handled"] == 3000, probe
            assert (probe["yielded"] > 0) == (yield_ms > 0), probe
            while d.request({"cmd": "stats"})["intake_busy"] and time.time() < deadline:
                time.sleep(0.02)
            assert d.request({"cmd": "stats"})["intake_busy"] is False


def test_a_plugin_is_not_behind_for_events_it_does_not_take():
    # Events of types the probe does not take do not wake it: its cursor stays where its last
    # batch left it until something does. It is not behind for them, and says so.
    with Daemon("lag") as d:
        d.ok("probe.event", {"n": 0})
        d.sync()
        replies = d.send_many([d.envelope("directory.district.upserted",
                                          {"district": "dist-%d" % i, "name": "D%d" % i},
                                          school=None, district="dist-%d" % i)
                               for i in range(50)])
        assert all(r["ok"] for r in replies)
        last = max(r["event"] for r in replies)
        probe = d.plugin("probe")
        assert probe["cursor"] < last and probe["lag"] == 0, probe
        # A class of a school the directory does not place in a district: the daemon does not
        # keep it in memory, so nobody can say the probe need not look at it. It counts; what
        # comes after it and is not the probe's does not.
        d.ok("directory.class.upserted", {"class": "c-1", "grade": "1"}, school="sch-009")
        replies = d.send_many([d.envelope("directory.district.upserted",
                                          {"district": "dist-x%d" % i, "name": "X%d" % i},
                                          school=None, district="dist-x%d" % i)
                               for i in range(50)])
        assert all(r["ok"] for r in replies)
        probe = d.plugin("probe")
        assert probe["cursor"] < last and probe["lag"] == 1, probe


def test_manual_clock_fires_every_deadline_on_the_way():
    with Daemon("clock") as d:
        d.set_time("2026-06-15T00:00:00Z")
        for name, at in (("t1", "2026-06-16T00:00:00Z"), ("t2", "2026-06-18T12:00:00Z"),
                         ("t3", "2026-07-01T00:00:00Z")):
            d.ok("probe.timer", {"name": name, "at": at})
        assert d.advance(5 * 86400) == "2026-06-20T00:00:00Z"
        fired = d.events("probe.fired")
        assert [(e["data"]["name"], e["occurred_at"].isoformat()) for e in fired] == [
            ("t1", "2026-06-16T00:00:00+00:00"), ("t2", "2026-06-18T12:00:00+00:00")], fired
        # The clock survives a restart; the pending deadline still fires.
        d.restart()
        assert d.request({"cmd": "status"})["clock"]["now"] == "2026-06-20T00:00:00Z"
        d.advance(20 * 86400)
        assert [e["data"]["name"] for e in d.events("probe.fired")] == ["t1", "t2", "t3"]
        r = d.request({"cmd": "clock.advance", "seconds": "soon"})
        assert not r["ok"] and "seconds" in r["detail"], r


def test_clock_commands_refused_in_system_mode():
    with Daemon("sysclock", manual=False) as d:
        r = d.request({"cmd": "clock.advance", "seconds": 60})
        assert not r["ok"] and "manual" in r["detail"], r


def test_published_events_carry_their_number():
    with Daemon("publish") as d:
        sub = d.subscriber("probe.")
        n = d.ok("probe.echo", {})
        frames = []
        while len(frames) < 2 and sub.poll(10000):
            frames.append(sub.recv_multipart())
        types = [f[0].decode() for f in frames]
        assert types == ["probe.echo", "probe.echoed"], types
        env = json.loads(frames[0][1])
        assert env["event"] == n and env["type"] == "probe.echo" and env["occurred_at"], env
        emitted = json.loads(frames[1][1])
        assert emitted["source"] == "probe" and emitted["data"] == {"of": n}, emitted
        sub.close(0)


def test_directory_is_kept_and_fills_districts():
    with Daemon("directory") as d:
        d.directory()
        schools = d.sql("SELECT school, district, timezone FROM core.schools ORDER BY school")
        assert schools == [{"school": "sch-001", "district": "dist-01", "timezone": "Asia/Shanghai"},
                           {"school": "sch-002", "district": "dist-01", "timezone": None}], schools
        people = d.sql("SELECT person FROM core.people WHERE 'district_safety_office' = ANY(roles)")
        assert people == [{"person": "d-safety"}]
        assert d.sql("SELECT count(*) AS n FROM core.students")[0]["n"] == 30
        d.ok("probe.event", {"n": 1}, school="sch-002")
        assert d.events("probe.event")[0]["district"] == "dist-01"
        # A school moved to another district: its next events carry the new one.
        d.ok("directory.district.upserted", {"district": "dist-02", "name": "West"}, school=None,
             district="dist-02")
        moved = d.ok("directory.school.upserted", {"name": "Second", "district": "dist-02"},
                     school="sch-002")
        d.ok("probe.event", {"n": 2}, school="sch-002")
        assert d.events("probe.event")[-1]["district"] == "dist-02"
        assert d.sql("SELECT district FROM core.events WHERE id = %s", [moved]) == [
            {"district": "dist-02"}]
        r = d.send("directory.student.upserted", {"student": "st-999", "class": "c-1a", "name": "Xiao Ming"})
        assert not r["ok"] and "data.name" in r["detail"], r
        r = d.send("directory.school.upserted", {"name": "X", "district": "dist-01", "timezone": "Mars/Base"})
        assert not r["ok"] and "timezone" in r["detail"], r


def test_migrations_once_and_changed_file_refused():
    with Daemon("migrate") as d:
        d.restart()
        rows = d.sql("SELECT component, version FROM core.migrations ORDER BY component, version")
        assert rows == [{"component": "core", "version": v} for v in CORE_VERSIONS] + \
            [{"component": "probe", "version": v} for v in PROBE_VERSIONS], rows
        d.stop()
        d.sql("UPDATE core.migrations SET checksum = 'x' WHERE component = 'probe'")
        d.start(wait=False)
        assert d.proc.wait(30) != 0
        assert "was changed after it was applied" in d.log()


def test_two_daemons_starting_together_migrate_once():
    with Daemon("race") as a:
        a.stop()
        a.drop_database()
        a.create_database()
        b = Daemon("race-b", database=a.dbname)
        try:
            a.start(wait=False)
            b.start(wait=False)
            a.wait_ready()
            b.wait_ready()
            rows = a.sql("SELECT component, version, count(*) AS n FROM core.migrations"
                         " GROUP BY component, version")
            assert all(r["n"] == 1 for r in rows) and len(rows) == len(CORE_VERSIONS) + len(PROBE_VERSIONS), rows
        finally:
            b.stop()
            import shutil
            shutil.rmtree(b.tmp, ignore_errors=True)


def test_config_errors_name_file_line_and_path():
    with Daemon("config") as d:
        base = open(d.config_path).read()
        cases = [
            ("ingest: { max_bytes = \"big\"; };", "ingest.max_bytes: expected an integer"),
            ("ingest: { colour = 1; };", "ingest.colour: unknown key"),
            ("probe: { delay_ms = true; };", "probe.delay_ms: expected an integer"),
            ("probe: { speed = 1; };", "probe.speed: unknown key"),
            ("nosuchplugin: { a = 1; };", "nosuchplugin: unknown section"),
            ("clock: { mode = \"sundial\"; };", "clock.mode: must be one of"),
            ("ingest: { endpoint = \"tcp://0.0.0.0:7600\"; };", None),
            ("plugins: { dir = \"%s\"; load = [\"probe\", \"ghost\"]; };" % d.plugin_dir,
             "plugins.load: no plugin \"ghost\""),
            ("this is not libconfig", ".bad:10: syntax error"),
        ]
        for extra, expect in cases:
            path = d.config_path + ".bad"
            # later settings of a group replace earlier ones in libconfig? No: duplicates are
            # errors, so the case text replaces the harness's own group where it has one.
            text = base
            group = extra.split(":")[0]
            text = "\n".join(l for l in text.splitlines() if not l.startswith(group + ":"))
            with open(path, "w") as f:
                f.write(text + "\n" + extra + "\n")
            r = subprocess.run([DAEMON, "--config", path, "--check-config"], capture_output=True,
                               text=True)
            if expect is None:  # a non-loopback endpoint is checked at start, not here
                continue
            assert r.returncode == 2 and expect in r.stderr, (extra, r.returncode, r.stderr)
        r = subprocess.run([DAEMON, "--config", d.config_path, "--check-config"], capture_output=True,
                           text=True)
        assert r.returncode == 0 and "probe" in r.stdout, r


def test_non_loopback_ingest_needs_curve_or_insecure():
    with Daemon("exposed") as d:
        d.stop()
        d.write_config('ingest: { endpoint = "tcp://0.0.0.0:%d"; };' % d.ingest_port)
        text = open(d.config_path).read().replace(
            'ingest: { endpoint = "tcp://127.0.0.1:%d"; };\n' % d.ingest_port, "")
        open(d.config_path, "w").write(text)
        d.start(wait=False)
        assert d.proc.wait(30) != 0
        assert "reachable from other machines" in d.log()


def test_sighup_applies_plugin_settings_and_names_what_needs_a_restart():
    with Daemon("reload") as d:
        d.write_config("probe: { delay_ms = 1; };\nlog: { level = \"debug\"; };")
        text = open(d.config_path).read()
        text = text.replace('log: { level = "info"; };\n', "").replace(
            'ingest: { endpoint = "tcp://127.0.0.1:%d"; };' % d.ingest_port,
            'ingest: { endpoint = "tcp://127.0.0.1:%d"; };' % (d.ingest_port + 1))
        open(d.config_path, "w").write(text)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "new settings applied" not in d.log() and time.time() < deadline:
            time.sleep(0.05)
        log = d.log()
        assert "probe: new settings applied" in log, log
        assert "ingest changed; that needs a restart" in log, log
        assert d.send("probe.event", {"n": 1})["ok"]  # still on the old endpoint


def test_plugins_are_given_the_same_event_from_memory_and_from_the_journal():
    # Plugins take recent events from memory (plugins.tail) and read older ones back from the
    # journal; handle() must be given the same event either way. The probe writes down all it
    # was given. The same journal handled again from the start, read from the database only,
    # must give the same record, row for row.
    datas = [
        {"n": 0},
        {"text": "食堂 \"东\" \\ 门\n\t😀", "nested": {"b": [1, 2.5, -0.0, 1e16, True, None],
                                                   "a": {}, "": []}},
        {"real": 1.0, "big": 9007199254740993, "tiny": 1.5e-7, "neg": -12, "z": ""},
        # Written with an exponent (2e+16): the journal keeps it as a run of digits.
        {"exp": 2e16, "ok": [0.5]},
    ]
    envs = []
    with Daemon("alike", plugins=["probe"]) as d:
        d.directory()
        for i, data in enumerate(datas):
            envs.append(d.envelope("probe.event", dict(data, n=i)))
            envs.append(d.envelope("probe.event", dict(data, n=10 + i), actor="t-001",
                                   occurred_at="2026-06-15T08:00:00.123456+08:00"))
            # A school the directory does not know: the journal may fill in its district.
            envs.append(d.envelope("probe.event", dict(data, n=20 + i), school="sch-unlisted"))
            envs.append(d.envelope("probe.event", dict(data, n=30 + i), district="dist-other"))
        envs.append(d.envelope("probe.echo", {"n": 40}))  # and one a plugin raises
        for e in envs:  # one at a time, so most are taken from memory
            r = d.send_raw(json.dumps(e))
            assert r["ok"], r
            d.sync()
        refused = d.send("probe.event", {"n": 50, "far": 1e17})
        assert refused["error"] == "invalid_event" and "data.far" in refused["detail"], refused
        live = d.sql("SELECT event, seen FROM probe.handled ORDER BY event")
        first = d.plugin("probe")
        assert len(live) == len(envs) + 1, live  # and the echoed event
        assert first["from_tail"] > len(envs) / 2, first
        d.stop()
        d.sql("DELETE FROM probe.handled")
        d.sql("UPDATE core.cursors SET position = 0 WHERE plugin = 'probe'")
        d.plugin_settings = "tail = 0;"
        d.write_config()
        d.start()
        d.sync()
        again = d.plugin("probe")
        assert again["from_tail"] == 0 and again["from_journal"] >= len(live), again
        replayed = d.sql("SELECT event, seen FROM probe.handled ORDER BY event")
        for a, b in zip(live, replayed):
            assert a == b, (a, b)
        # Handling the echo again raised one more echoed event, after all the others.
        assert [json.loads(r["seen"])["type"] for r in replayed[len(live):]] == ["probe.echoed"]
        seen = [json.loads(r["seen"]) for r in live if json.loads(r["seen"])["data"].get("n") == 1][0]
        assert seen["data"]["text"] == datas[1]["text"] and seen["data"]["nested"]["b"][2] == 0


def test_plugins_see_the_directory_as_it_is_after_a_change():
    # Runners keep the schools and classes plugins ask for from one transaction to the next;
    # a change to the directory journaled since must not leave a plugin with the old entry.
    # The probe writes down the school's time zone as the directory gives it.
    with Daemon("dirkeep", plugins=["probe"]) as d:
        d.directory()
        zones = ["Asia/Shanghai", "Europe/London", "Asia/Urumqi", "Asia/Shanghai"]
        seen = []
        for i, zone in enumerate(zones):
            r = d.send("directory.school.upserted", {"name": "Lakeside Primary",
                                                     "district": "dist-01", "timezone": zone})
            assert r["ok"], r
            # Several events a step, each its own transaction, all after the change.
            for k in range(3):
                assert d.send("probe.event", {"n": 10 * i + k})["ok"]
                d.sync()
            rows = d.sql("SELECT seen FROM probe.handled ORDER BY event")
            seen.append([json.loads(r["seen"])["timezone"] for r in rows][-3:])
        assert seen == [[z] * 3 for z in zones], seen
        # The change and the next event in one batch of the journal, too.
        s = d.dealer()
        s.send(json.dumps(d.envelope("directory.school.upserted", {
            "name": "Lakeside Primary", "district": "dist-01", "timezone": "Asia/Tokyo"})).encode())
        s.send(json.dumps(d.envelope("probe.event", {"n": 99})).encode())
        for _ in range(2):
            assert s.poll(5000) and json.loads(s.recv())["ok"]
        d.sync()
        last = d.sql("SELECT seen FROM probe.handled ORDER BY event DESC LIMIT 1")[0]
        assert json.loads(last["seen"])["timezone"] == "Asia/Tokyo", last


def test_sigterm_acks_the_batch_in_flight_and_exits_0():
    with Daemon("term") as d:
        s = d.dealer()
        for i in range(500):
            s.send(json.dumps(d.envelope("probe.event", {"n": i})).encode())
        time.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        replies = []
        while s.poll(5000):
            replies.append(json.loads(s.recv()))
        code = d.proc.wait(30)
        assert code == 0, (code, d.log()[-2000:])
        acked = {r["event"] for r in replies if r["ok"]}
        assert replies and all(r["ok"] for r in replies), replies[:3]
        journaled = {r["id"] for r in d.sql("SELECT id FROM core.events WHERE type = 'probe.event'")}
        assert acked <= journaled, len(acked - journaled)
        d.start()


def test_safecampusctl_speaks_for_the_daemon():
    with Daemon("ctl") as d:
        r = d.ctl("send", "probe.event", "--school", "sch-001", "--id", "c-1", "n=3")
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r
        lines = "\n".join(json.dumps(d.envelope("probe.event", {"n": i})) for i in range(50))
        r = d.ctl("send", "-", input=lines + "\n" + '{"type":"probe.event"}\n')
        out = [json.loads(l) for l in r.stdout.splitlines()]
        assert r.returncode == 1 and len(out) == 51 and sum(1 for o in out if o["ok"]) == 50, r
        r = d.ctl("plugins")
        assert json.loads(r.stdout)["plugins"][0]["name"] == "probe"
        # Latency for a person: percentiles, without the histograms' buckets unless asked.
        r = d.ctl("stats")
        lat = json.loads(r.stdout)["latency"]
        assert r.returncode == 0 and lat["in_daemon"]["count"] >= 51, r
        assert "buckets" not in lat["in_daemon"] and lat["journal"]["p99_ms"] > 0, lat
        r = d.ctl("stats", "--buckets")
        assert json.loads(r.stdout)["latency"]["journal"]["buckets"], r
        r = d.ctl("stats", "--bucket")
        assert r.returncode == 2 and "--bucket" in r.stderr, r
        r = d.ctl("clock", "advance", "1h")
        assert r.returncode == 0 and json.loads(r.stdout)["now"] == "2026-06-15T00:00:00Z", r
        # The advance answered after every plugin caught up: all 51 accepted events handled.
        r = d.ctl("query", "probe", "count")
        assert r.returncode == 0 and json.loads(r.stdout)["handled"] == 51, r
        r = subprocess.run([CTL, "--control", "ipc:///nonexistent/control", "status"],
                           capture_output=True, text=True)
        assert r.returncode == 3 and "not there" in r.stderr, r
        tail = subprocess.Popen([CTL, "--config", d.config_path, "tail", "probe."],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        d.ok("probe.event", {"n": 99}, id="tailed")
        line = tail.stdout.readline()
        tail.terminate()
        assert json.loads(line)["id"] == "tailed", line


def test_systemd_notify_ready_watchdog_reloading_stopping():
    import socket as pysocket
    path = "/tmp/sc-notify-%d.sock" % os.getpid()
    sock = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"] = path, "200000"
    try:
        with Daemon("notify-socket") as d:
            seen = []
            while not any("WATCHDOG=1" in m for m in seen):
                seen.append(sock.recv(4096).decode())
            assert seen[0].startswith("READY=1"), seen
            d.proc.send_signal(signal.SIGHUP)
            while "READY=1" not in seen[-1] or not any("RELOADING=1" in m for m in seen):
                seen.append(sock.recv(4096).decode())
            assert d.stop() == 0
            rest = []
            try:
                while True:
                    rest.append(sock.recv(4096).decode())
            except OSError:
                pass
            assert "STOPPING=1" in rest, rest
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        sock.close()
        os.unlink(path)


if __name__ == "__main__":
    main(globals())
