/* libpq helpers: parameterised execution, error classes, results as JSON. */
#include <safecampus/util.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs from pg_type.h, which is not part of libpq's public headers. */
enum {
    S_BOOLOID = 16,
    S_INT8OID = 20,
    S_INT2OID = 21,
    S_INT4OID = 23,
    S_JSONOID = 114,
    S_FLOAT4OID = 700,
    S_FLOAT8OID = 701,
    S_NUMERICOID = 1700,
    S_JSONBOID = 3802,
};

int sc_pq_error(PGconn *conn, const PGresult *res)
{
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return -EAGAIN;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return res ? -EIO : -EAGAIN;
    /* 08: connection exception; 40001/40P01: serialization, deadlock; 55P03 lock
     * not available; 53300 too many connections; 57P0x: shutting down. */
    if (strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 || strcmp(state, "53300") == 0 ||
        strncmp(state, "57P0", 4) == 0)
        return -EAGAIN;
    return -EIO;
}

PGresult *sc_pq_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, int *rc)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (rc)
            *rc = 0;
        return res;
    }
    if (rc)
        *rc = sc_pq_error(conn, res);
    PQclear(res);
    return NULL;
}

json_t *sc_pq_value(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case S_BOOLOID:
        return json_boolean(v[0] == 't');
    case S_INT2OID:
    case S_INT4OID:
    case S_INT8OID:
        return json_integer(strtoll(v, NULL, 10));
    case S_FLOAT4OID:
    case S_FLOAT8OID:
    case S_NUMERICOID:
        return json_real(strtod(v, NULL));
    case S_JSONOID:
    case S_JSONBOID: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        return json_string(v);
    }
}

json_t *sc_pq_rows(const PGresult *res)
{
    json_t *rows = json_array();
    int nrows = PQntuples(res), ncols = PQnfields(res);
    for (int r = 0; r < nrows; r++) {
        json_t *o = json_object();
        for (int c = 0; c < ncols; c++)
            json_object_set_new(o, PQfname(res, c), sc_pq_value(res, r, c));
        json_array_append_new(rows, o);
    }
    return rows;
}
