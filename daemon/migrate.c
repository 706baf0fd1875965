/* Numbered SQL migrations: applied once, in order, recorded with a checksum, under a lock. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Any fixed number: the key of the session lock two starting daemons queue on. */
#define S_MIGRATE_LOCK "7600001"

static const char s_bootstrap[] = "CREATE SCHEMA IF NOT EXISTS core;"
                                  "CREATE TABLE IF NOT EXISTS core.migrations ("
                                  "  component text NOT NULL,"
                                  "  version integer NOT NULL,"
                                  "  name text NOT NULL,"
                                  "  checksum text NOT NULL,"
                                  "  applied_at timestamptz NOT NULL DEFAULT now(),"
                                  "  PRIMARY KEY (component, version))";

static int s_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
        rc = sc_pq_error(conn, res);
    }
    PQclear(res);
    return rc;
}

int sc__migrate_lock(PGconn *conn, bool lock, char *err, size_t errlen)
{
    int rc = s_exec(conn,
                    lock ? "SELECT pg_advisory_lock(" S_MIGRATE_LOCK ")"
                         : "SELECT pg_advisory_unlock(" S_MIGRATE_LOCK ")",
                    err, errlen);
    if (rc == 0 && lock)
        rc = s_exec(conn, s_bootstrap, err, errlen);
    return rc;
}

static int s_apply_one(PGconn *conn, const char *component, const struct sc_migration *m, char *err,
                       size_t errlen)
{
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *p[4] = {component, version, m->sql, m->name};
    int rc;
    PGresult *res =
        sc_pq_exec(conn,
                   "SELECT m.checksum, m.name,"
                   "       encode(sha256(convert_to($3, 'UTF8')), 'hex')"
                   "  FROM (SELECT 1) one"
                   "  LEFT JOIN core.migrations m ON m.component = $1 AND m.version = $2",
                   3, p, &rc);
    if (!res) {
        snprintf(err, errlen, "%s/%s: %s", component, m->name, PQerrorMessage(conn));
        return rc;
    }
    const char *sum = PQgetvalue(res, 0, 2);
    if (!PQgetisnull(res, 0, 0)) {
        rc = 0;
        if (strcmp(PQgetvalue(res, 0, 0), sum) != 0) {
            snprintf(err, errlen,
                     "migration %s/%s was changed after it was applied as %s (checksum %.12s…, "
                     "applied %.12s…): add a new migration instead of editing an applied one",
                     component, m->name, PQgetvalue(res, 0, 1), sum, PQgetvalue(res, 0, 0));
            rc = -EINVAL;
        }
        PQclear(res);
        return rc;
    }
    char checksum[80];
    snprintf(checksum, sizeof checksum, "%s", sum);
    PQclear(res);

    if ((rc = s_exec(conn, "BEGIN", err, errlen)) < 0)
        return rc;
    PGresult *r = PQexec(conn, m->sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "migration %s/%s failed: %s", component, m->name,
                 PQerrorMessage(conn));
        rc = sc_pq_error(conn, r);
        PQclear(r);
        PQclear(PQexec(conn, "ROLLBACK"));
        return rc < 0 ? rc : -EIO;
    }
    PQclear(r);
    const char *ins[4] = {component, version, m->name, checksum};
    res = sc_pq_exec(conn,
                     "INSERT INTO core.migrations (component, version, name, checksum)"
                     " VALUES ($1, $2, $3, $4)",
                     4, ins, &rc);
    if (!res) {
        snprintf(err, errlen, "%s/%s: %s", component, m->name, PQerrorMessage(conn));
        PQclear(PQexec(conn, "ROLLBACK"));
        return rc;
    }
    PQclear(res);
    if ((rc = s_exec(conn, "COMMIT", err, errlen)) < 0)
        return rc;
    sc__log(SC_LOG_NOTICE, "core", "applied migration %s/%s", component, m->name);
    return 0;
}

int sc__migrate(PGconn *conn, const char *component, const struct sc_migration *migrations,
                char *err, size_t errlen)
{
    int last = 0;
    for (const struct sc_migration *m = migrations; m && m->version; m++) {
        if (m->version <= last) {
            snprintf(err, errlen, "migration %s/%s: version %d does not follow %d", component,
                     m->name, m->version, last);
            return -EINVAL;
        }
        last = m->version;
        int rc = s_apply_one(conn, component, m, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}
