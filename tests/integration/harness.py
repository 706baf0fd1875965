"""Integration test harness: the real safecampusd on a throwaway database, real ZeroMQ on loopback.

Run by scripts/run-tests with /usr/bin/python3 (Debian's python3-zmq and python3-psycopg2).
The cluster comes from the environment (SC_TEST_CONNINFO, SC_TEST_PGHOST, SC_TEST_PGPORT);
every Daemon gets its own database, ports, control socket and plugin folder.

    from harness import Daemon, main

    def test_something():
        with Daemon("something", plugins=["probe"]) as d:
            d.directory()
            r = d.send("probe.event", {"n": 1})
            assert r["ok"], r
            d.advance(3600)
            assert d.query("probe", "count")["handled"] == 1

    if __name__ == "__main__":
        main(globals())
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import psycopg2
import psycopg2.extras
import zmq

TOP = os.environ.get("SC_TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("SC_BUILD") or os.path.join(TOP, "build")
DAEMON = os.path.join(BUILD, "safecampusd")
CTL = os.path.join(BUILD, "safecampusctl")
PLUGIN_DIRS = [os.path.join(BUILD, "plugins"), os.path.join(BUILD, "tests", "plugins")]
START = "2026-06-15T07:00:00+08:00"  # a Monday morning in term, Asia/Shanghai

_ZCTX = zmq.Context.instance()


_PORTS_GIVEN = set()


def free_port():
    """A TCP port on loopback nothing is bound to, for a daemon to bind a moment later: below
    the kernel's ephemeral range (32768 and up), so no outgoing connection can take it in the
    meantime, and never one already given in this process (two calls in a row could both get
    the port the kernel had just released: ingest then failed, "Address already in use")."""
    for _ in range(1000):
        port = random.randrange(20000, 32768)
        if port in _PORTS_GIVEN:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free TCP port on loopback between 20000 and 32767")


def pg_params(dbname=None):
    """psycopg2 connection keywords for the test cluster (or one of its databases)."""
    params = {
        "host": os.environ.get("SC_TEST_PGHOST", os.environ.get("PGHOST", "/run/postgresql")),
        "port": os.environ.get("SC_TEST_PGPORT", os.environ.get("PGPORT", "5432")),
        "user": "postgres",
        "dbname": dbname or "postgres",
    }
    return params


def _more(settings):
    """Extra settings of a group, spaced so that a config without them reads as before."""
    return settings + " " if settings else ""


class Daemon:
    """One safecampusd with its own database. Use as a context manager."""

    def __init__(self, name, plugins=("probe",), config="", clock=START, manual=True, keep=False,
                 database=None, plugin_settings="", ingest_settings="", clock_settings="",
                 env=None):
        self.name = name
        self.clock_settings = clock_settings  # more settings of the clock group, system mode
        self.env = dict(env or {})  # more of the daemon's environment, over the test's own
        self.plugin_settings = plugin_settings  # more settings of the plugins group
        self.ingest_settings = ingest_settings  # and of the ingest group
        self.plugins = list(plugins)
        self.extra_config = config
        self.clock_start = clock
        self.manual = manual
        self.keep = keep or bool(os.environ.get("SC_KEEP"))
        self.tmp = tempfile.mkdtemp(prefix="sc-%s-" % name)
        self.dbname = database or ("t_%s_%d" % (name.replace("-", "_"), os.getpid()))[:60]
        self.ingest_port = free_port()
        self.publish_port = free_port()
        self.control = "ipc://%s/control" % self.tmp
        self.proc = None
        self.logf = None
        self._dealer = None
        self._db = None
        self.plugin_dir = os.path.join(self.tmp, "plugins")
        os.mkdir(self.plugin_dir)
        for p in self.plugins:
            for d in PLUGIN_DIRS:
                so = os.path.join(d, p + ".so")
                if os.path.exists(so):
                    os.symlink(so, os.path.join(self.plugin_dir, p + ".so"))
                    break
            else:
                raise RuntimeError("no plugin %s.so under %s" % (p, PLUGIN_DIRS))
        self.config_path = os.path.join(self.tmp, "safecampusd.conf")
        self.write_config()

    # ---- set-up ----

    @property
    def conninfo(self):
        p = pg_params(self.dbname)
        return "host=%s port=%s user=%s dbname=%s" % (p["host"], p["port"], p["user"], p["dbname"])

    def write_config(self, extra=None):
        if extra is not None:
            self.extra_config = extra
        clock = 'clock: { mode = "manual"; start = "%s"; sync_timeout = 120; };' % self.clock_start \
            if self.manual else 'clock: { mode = "system"; %s};' % _more(self.clock_settings)
        text = """# written by tests/integration/harness.py
database: { conninfo = "%s"; reconnect_max = 2; };
ingest: { endpoint = "tcp://127.0.0.1:%d"; %s};
publish: { endpoint = "tcp://127.0.0.1:%d"; };
control: { endpoint = "%s"; };
%s
plugins: { dir = "%s"; attempts = 3; backoff_min = 20; backoff_max = 200; %s};
log: { level = "%s"; };
%s
""" % (self.conninfo, self.ingest_port, _more(self.ingest_settings), self.publish_port,
            self.control, clock, self.plugin_dir, _more(self.plugin_settings), os.environ.get("SC_LOG_LEVEL", "info"), self.extra_config)
        with open(self.config_path, "w") as f:
            f.write(text)

    def create_database(self):
        conn = psycopg2.connect(**pg_params())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s" % self.dbname)
            cur.execute("CREATE DATABASE %s" % self.dbname)
        conn.close()

    def drop_database(self):
        if self._db:
            self._db.close()
            self._db = None
        conn = psycopg2.connect(**pg_params())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.dbname)
        conn.close()

    def __enter__(self):
        self.create_database()
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.proc and self.proc.poll() is None:
            self.stop()
        if exc_type is not None:
            sys.stderr.write("---- daemon log (%s) ----\n%s\n" % (self.name, self.log()[-6000:]))
        if self._dealer is not None:
            self._dealer.close(0)
        if not self.keep:
            self.drop_database()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    # ---- the process ----

    def start(self, wait=True, args=()):
        self.logf = open(os.path.join(self.tmp, "daemon.log"), "ab")
        self.proc = subprocess.Popen([DAEMON, "--config", self.config_path] + list(args),
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **self.env))
        if wait:
            self.wait_ready()
        return self.proc

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("safecampusd exited with %s:\n%s" % (self.proc.returncode,
                                                                        self.log()[-4000:]))
            if os.path.exists(self.control[len("ipc://"):]):
                try:
                    r = self.request({"cmd": "status"}, timeout=2)
                    if r.get("ok"):
                        return r
                except TimeoutError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("safecampusd not ready after %ds:\n%s" % (timeout, self.log()[-4000:]))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon; returns its exit status."""
        if self._dealer is not None:
            self._dealer.close(0)
            self._dealer = None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise RuntimeError("safecampusd did not stop within %ds" % timeout)
        self.logf.close()
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        if self.proc.poll() is None:
            self.stop()
        return self.start()

    def log(self):
        try:
            with open(os.path.join(self.tmp, "daemon.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- ingest ----

    def envelope(self, type, data, school="sch-001", source="test", id=None, **kw):
        env = {"type": type, "source": source, "data": data}
        if school is not None:
            env["school"] = school
        env["id"] = id if id is not None else uuid.uuid4().hex
        for k, v in kw.items():
            if v is not None:
                env[k] = v
        return env

    def dealer(self):
        if self._dealer is None:
            self._dealer = _ZCTX.socket(zmq.DEALER)
            self._dealer.setsockopt(zmq.LINGER, 0)
            self._dealer.connect("tcp://127.0.0.1:%d" % self.ingest_port)
        return self._dealer

    def new_dealer(self):
        """A DEALER of its own on ingest, for replies kept apart from dealer()'s."""
        s = _ZCTX.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("tcp://127.0.0.1:%d" % self.ingest_port)
        return s

    def send_raw(self, frame, timeout=30):
        """Sends one frame (bytes or str) and returns the reply as a dict."""
        s = self.dealer()
        s.send(frame if isinstance(frame, bytes) else frame.encode())
        if not s.poll(timeout * 1000):
            raise TimeoutError("no reply from ingest within %ds" % timeout)
        return json.loads(s.recv())

    def send(self, type, data, school="sch-001", source="test", id=None, **kw):
        """Sends one event; returns the reply dict."""
        return self.send_raw(json.dumps(self.envelope(type, data, school, source, id, **kw)))

    def send_many(self, envelopes, timeout=60):
        """Pipelines envelopes on one DEALER; returns the replies in arrival order."""
        s = self.dealer()
        for e in envelopes:
            s.send((e if isinstance(e, (str, bytes)) else json.dumps(e)).encode()
                   if not isinstance(e, bytes) else e)
        replies = []
        deadline = time.time() + timeout
        while len(replies) < len(envelopes):
            if not s.poll(max(1, int((deadline - time.time()) * 1000))):
                raise TimeoutError("%d of %d replies" % (len(replies), len(envelopes)))
            replies.append(json.loads(s.recv()))
        return replies

    def ok(self, type, data, **kw):
        """Sends one event that must be accepted; returns its event number."""
        r = self.send(type, data, **kw)
        assert r.get("ok"), "%s refused: %s" % (type, r)
        return r["event"]

    # ---- control ----

    def request(self, req, timeout=120):
        s = _ZCTX.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.control)
        try:
            s.send_json(req)
            if not s.poll(timeout * 1000):
                raise TimeoutError("no control reply to %s" % req.get("cmd"))
            return s.recv_json()
        finally:
            s.close(0)

    def advance(self, seconds):
        r = self.request({"cmd": "clock.advance", "seconds": seconds}, timeout=600)
        assert r.get("ok"), r
        return r["now"]

    def set_time(self, when):
        r = self.request({"cmd": "clock.set", "time": when}, timeout=600)
        assert r.get("ok"), r
        return r["now"]

    def sync(self):
        """Waits until every plugin has handled everything journaled (a zero advance)."""
        return self.advance(0)

    def query(self, plugin, what, **kw):
        req = {"cmd": "query", "plugin": plugin, "what": what}
        req.update(kw)
        return self.request(req)

    def plugin(self, name):
        for p in self.request({"cmd": "plugins"})["plugins"]:
            if p["name"] == name:
                return p
        raise KeyError(name)

    def ctl(self, *args, input=None, timeout=120):
        return subprocess.run([CTL, "--config", self.config_path] + list(args), input=input,
                              capture_output=True, text=True, timeout=timeout)

    # ---- the database ----

    def db(self):
        if self._db is None or self._db.closed:
            self._db = psycopg2.connect(**pg_params(self.dbname))
            self._db.autocommit = True
        return self._db

    def sql(self, query, params=None):
        """Runs a query on the test database; returns rows as dicts (or [] for commands)."""
        with self.db().cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def events(self, type=None, prefix=None, after=0):
        """Journal rows, in order, optionally of one type or type prefix."""
        q = "SELECT * FROM core.events WHERE id > %s"
        p = [after]
        if type:
            q += " AND type = %s"
            p.append(type)
        if prefix:
            q += " AND starts_with(type, %s)"
            p.append(prefix)
        return self.sql(q + " ORDER BY id", p)

    def subscriber(self, *prefixes):
        """A SUB socket on the publish endpoint (give it a moment to connect)."""
        s = _ZCTX.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("tcp://127.0.0.1:%d" % self.publish_port)
        for p in prefixes or ("",):
            s.setsockopt(zmq.SUBSCRIBE, p.encode())
        time.sleep(0.3)
        return s

    # ---- a standard directory ----

    def directory(self, webhook=None):
        """Sends a small district: dist-01 with schools sch-001 and sch-002, classes, people."""
        contacts = lambda who: dict({"email": "%s@school.example" % who, "phone": "+8613800000000"},
                                    **({"webhook": webhook} if webhook else {}))
        evs = [
            self.envelope("directory.district.upserted", {"district": "dist-01", "name": "Lakeside District"},
                          school=None, district="dist-01"),
            self.envelope("directory.school.upserted", {"name": "Lakeside Primary", "district": "dist-01",
                                                        "timezone": "Asia/Shanghai"}),
            self.envelope("directory.school.upserted", {"name": "Hillview Primary", "district": "dist-01"},
                          school="sch-002"),
            self.envelope("directory.class.upserted", {"class": "c-1a", "grade": 1, "head_teacher": "t-101"}),
            self.envelope("directory.class.upserted", {"class": "c-1b", "grade": 1, "head_teacher": "t-102"}),
            self.envelope("directory.class.upserted", {"class": "c-2a", "grade": 2, "head_teacher": "t-201"}),
            self.envelope("directory.class.upserted", {"class": "c-1a", "grade": 1, "head_teacher": "t-901"},
                          school="sch-002"),
        ]
        people = [
            ("p-principal", "Wang Fang", ["principal"], "sch-001"),
            ("p-safety", "Li Qiang", ["safety_officer", "teacher"], "sch-001"),
            ("p-doctor", "Zhao Min", ["school_doctor"], "sch-001"),
            ("t-101", "Chen Jie", ["head_teacher", "teacher"], "sch-001"),
            ("t-102", "Liu Yang", ["head_teacher", "teacher"], "sch-001"),
            ("t-201", "Sun Li", ["head_teacher", "teacher"], "sch-001"),
            ("p2-principal", "Zhou Hua", ["principal"], "sch-002"),
            ("p2-safety", "Wu Gang", ["safety_officer"], "sch-002"),
            ("t-901", "Zheng Wei", ["head_teacher", "teacher"], "sch-002"),
        ]
        for code, name, roles, school in people:
            evs.append(self.envelope("directory.person.upserted",
                                     {"person": code, "name": name, "roles": roles, "contacts": contacts(code)},
                                     school=school))
        for code, name, roles in [("d-safety", "Ma Lin", ["district_safety_office"]),
                                  ("d-director", "Hu Jun", ["district_director"]),
                                  ("d-cdc", "Xu Ping", ["district_cdc_liaison"])]:
            evs.append(self.envelope("directory.person.upserted",
                                     {"person": code, "name": name, "roles": roles, "contacts": contacts(code)},
                                     school=None, district="dist-01"))
        for i in range(1, 31):
            klass = "c-1a" if i <= 10 else ("c-1b" if i <= 20 else "c-2a")
            evs.append(self.envelope("directory.student.upserted", {"student": "st-%03d" % i, "class": klass}))
        replies = self.send_many(evs)
        bad = [r for r in replies if not r.get("ok")]
        assert not bad, bad
        return replies


def main(tests):
    """Runs every test_* function of a module; exits non-zero if any failed."""
    only = sys.argv[1:]
    names = [n for n in sorted(tests) if n.startswith("test_") and callable(tests[n])
             and (not only or any(o in n for o in only))]
    failed = []
    for n in names:
        start = time.time()
        try:
            tests[n]()
            print("  ok    %-50s %5.1fs" % (n, time.time() - start), flush=True)
        except Exception:
            failed.append(n)
            print("  FAIL  %-50s %5.1fs" % (n, time.time() - start), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (len(names) - len(failed), len(failed)))
    sys.exit(1 if failed else 0)
