/* Connections to PostgreSQL, set up the same way for every thread. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGconn *sc__db_connect(const char *conninfo, const char *who, char *err, size_t errlen)
{
    char appname[96];
    snprintf(appname, sizeof appname, "safecampusd/%s", who);
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {conninfo, appname, "10", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "could not connect to \"%s\": %s", conninfo, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    /* Times cross the wire as UTC; plugins do local-time math with AT TIME ZONE. */
    PGresult *res = PQexec(conn, "SET TimeZone = 'UTC'; SET client_min_messages = warning;"
                                 "SET DateStyle = 'ISO'");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        snprintf(err, errlen, "could not set up the session: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
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
