/* Connections to PostgreSQL, set up the same way for every thread. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a connection attempt may take, blocking or not. */
#define S_CONNECT_TIMEOUT_S 10

static PGconn *s_start(const char *conninfo, const char *who, bool blocking)
{
    char appname[96], timeout[16];
    snprintf(appname, sizeof appname, "safecampusd/%s", who);
    snprintf(timeout, sizeof timeout, "%d", S_CONNECT_TIMEOUT_S);
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {conninfo, appname, timeout, NULL};
    return blocking ? PQconnectdbParams(keys, vals, 1) : PQconnectStartParams(keys, vals, 1);
}

PGconn *sc__db_connect(const char *conninfo, const char *who, char *err, size_t errlen)
{
    PGconn *conn = s_start(conninfo, who, true);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "could not connect to \"%s\": %s", conninfo, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    if (sc__db_session(conn, err, errlen) < 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGconn *sc__db_connect_start(const char *conninfo, const char *who, int64_t *deadline_ms)
{
    *deadline_ms = sc__mono_ms() + S_CONNECT_TIMEOUT_S * 1000;
    return s_start(conninfo, who, false);
}

int sc__db_session(PGconn *conn, char *err, size_t errlen)
{
    /* Times cross the wire as UTC; plugins do local-time math with AT TIME ZONE. */
    PGresult *res = PQexec(conn, "SET TimeZone = 'UTC'; SET client_min_messages = warning;"
                                 "SET DateStyle = 'ISO'");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : sc_pq_error(conn, res);
    if (rc < 0)
        snprintf(err, errlen, "could not set up the session: %s", PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

int sc__db_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : sc_pq_error(conn, res);
    PQclear(res);
    return rc;
}

int64_t sc__backoff_next(int64_t current_ms, int64_t min_ms, int64_t max_ms)
{
    int64_t next = current_ms <= 0 ? min_ms : current_ms * 2;
    return next > max_ms ? max_ms : next;
}

char *sc__pg_text_array(const json_t *strings)
{
    size_t cap = 3, i;
    const json_t *e;
    json_array_foreach(strings, i, e) cap += 2 * json_string_length(e) + 3;
    char *out = malloc(cap), *w = out;
    if (!out)
        return NULL;
    *w++ = '{';
    json_array_foreach(strings, i, e)
    {
        if (i)
            *w++ = ',';
        *w++ = '"';
        for (const char *c = json_string_value(e); c && *c; c++) {
            if (*c == '"' || *c == '\\')
                *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}
