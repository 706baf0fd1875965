"""Least privilege: migrations as the owner, the daemon without DDL, reporting confined by RLS."""

import os

import psycopg2

from harness import Daemon, main, pg_params

APP = "sc_app_%d" % os.getpid()
REPORT = "sc_report_%d" % os.getpid()


def admin(sql):
    conn = psycopg2.connect(**pg_params())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def connect_as(role, dbname):
    p = pg_params(dbname)
    p["user"] = role
    conn = psycopg2.connect(**p)
    conn.autocommit = True
    return conn


def test_daemon_role_has_no_ddl_and_reports_see_only_their_school():
    for group in ("safecampus_app", "safecampus_report"):
        admin("DO $$ BEGIN CREATE ROLE %s NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
              % group)
    admin("CREATE ROLE %s LOGIN IN ROLE safecampus_app" % APP)
    admin("CREATE ROLE %s LOGIN IN ROLE safecampus_report" % REPORT)
    try:
        d = Daemon("privileges")
        owner = d.conninfo
        d.write_config('database: { conninfo = "%s"; migrate_conninfo = "%s"; reconnect_max = 2; };'
                       % (owner.replace("user=postgres", "user=" + APP), owner))
        text = open(d.config_path).read().replace(
            'database: { conninfo = "%s"; reconnect_max = 2; };\n' % owner, "", 1)
        open(d.config_path, "w").write(text)
        with d:
            d.directory()
            d.ok("probe.event", {"n": 1}, school="sch-001")
            d.ok("probe.event", {"n": 2}, school="sch-002")
            d.ok("probe.echo", {}, school="sch-002")
            d.sync()
            assert d.query("probe", "count")["handled"] == 4  # with the emitted probe.echoed
            who = d.sql("SELECT usename FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'safecampusd/probe'")
            assert who == [{"usename": APP}], who

            app = connect_as(APP, d.dbname)
            with app.cursor() as cur:
                for ddl in ("CREATE TABLE core.intruder (x int)", "DROP TABLE core.events",
                            "ALTER TABLE probe.handled ADD COLUMN y int"):
                    try:
                        cur.execute(ddl)
                        raise AssertionError("the daemon's role could run: " + ddl)
                    except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.UndefinedTable) as e:
                        assert "permission denied" in str(e) or "must be owner" in str(e), e
            app.close()

            rep = connect_as(REPORT, d.dbname)
            with rep.cursor() as cur:
                cur.execute("SELECT count(*) FROM core.events")
                assert cur.fetchone()[0] == 0  # nothing until a scope is set
                cur.execute("SET app.school = 'sch-001'")
                cur.execute("SELECT DISTINCT school FROM core.events")
                assert [r[0] for r in cur.fetchall()] == ["sch-001"]
                cur.execute("SELECT DISTINCT school FROM core.people WHERE school IS NOT NULL")
                assert [r[0] for r in cur.fetchall()] == ["sch-001"]
                cur.execute("RESET app.school")
                cur.execute("SET app.district = 'dist-01'")
                cur.execute("SELECT DISTINCT school FROM core.events WHERE school IS NOT NULL"
                            " ORDER BY 1")
                assert [r[0] for r in cur.fetchall()] == ["sch-001", "sch-002"]
                cur.execute("SET app.district = 'dist-99'")
                cur.execute("SELECT count(*) FROM core.events")
                assert cur.fetchone()[0] == 0
                try:
                    cur.execute("SELECT * FROM core.sources")
                    raise AssertionError("a reporting role read core.sources")
                except psycopg2.errors.InsufficientPrivilege:
                    pass
            rep.close()
    finally:
        admin("DROP ROLE IF EXISTS %s" % APP)
        admin("DROP ROLE IF EXISTS %s" % REPORT)


if __name__ == "__main__":
    main(globals())
