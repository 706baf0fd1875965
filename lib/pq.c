/* libpq helpers: parameterised execution, error classes, results as JSON. */
#include <safecampus/util.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
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

/*
 * Statements sc_pq_exec has prepared, per thread (a connection is used by one thread).
 * Unprepared, every call was parsed and planned again: a third of a plugin backend's time
 * on its simplest statements. An entry belongs to a connection and its server process, so
 * a new connection at an old address starts with none; the server's "no such prepared
 * statement" empties the list of a connection all the same. Past S_PREPARED_MAX
 * statements a thread's further ones run unprepared.
 */
#define S_PREPARED_MAX 256

typedef struct s_prepared {
    const PGconn *conn;
    int pid;
    uint64_t hash;
    char *sql;
} s_prepared_t;

typedef struct s_prep {
    s_prepared_t v[S_PREPARED_MAX];
    size_t n;
} s_prep_t;

/* Each thread's list, freed when the thread ends. */
static pthread_key_t s_prep_key;
static pthread_once_t s_prep_once = PTHREAD_ONCE_INIT;

static void s_prep_destroy(void *p)
{
    s_prep_t *t = p;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].sql);
    free(t);
}

static void s_prep_key_make(void)
{
    pthread_key_create(&s_prep_key, s_prep_destroy);
}

static s_prep_t *s_prep_get(void)
{
    pthread_once(&s_prep_once, s_prep_key_make);
    s_prep_t *t = pthread_getspecific(s_prep_key);
    if (!t && (t = calloc(1, sizeof *t)) && pthread_setspecific(s_prep_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Drops the entries of `conn`, or of every connection at its address but a live one. */
static void s_prep_forget(s_prep_t *t, const PGconn *conn, int keep_pid)
{
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].conn == conn && t->v[i].pid != keep_pid)
            free(t->v[i].sql);
        else
            t->v[w++] = t->v[i];
    }
    t->n = w;
}

/*
 * The name of `sql` on this connection. Each copy of this file (the daemon's, each plugin's)
 * names its statements apart, since a runner thread runs both on one connection.
 */
static void s_prep_format(char *name, size_t namelen, uint64_t h)
{
    snprintf(name, namelen, "sc_pq_%llx_%016llx", (unsigned long long)(uintptr_t)&s_prep_format,
             (unsigned long long)h);
}

/*
 * Sets *name to what `sql` is prepared under on this connection, preparing it first; *name
 * is NULL when it is to run plain. Returns the failed PQprepare's result, if it failed.
 */
static PGresult *s_prep_name(PGconn *conn, const char *sql, char *name, size_t namelen,
                             const char **out)
{
    s_prep_t *t = s_prep_get();
    int pid = PQbackendPID(conn);
    uint64_t h = s_hash(sql);
    bool stale = false;
    *out = NULL;
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        const s_prepared_t *e = &t->v[i];
        if (e->conn != conn)
            continue;
        if (e->pid != pid) {
            stale = true;
        } else if (e->hash == h && strcmp(e->sql, sql) == 0) {
            s_prep_format(name, namelen, h);
            *out = name;
            return NULL;
        }
    }
    if (stale)
        s_prep_forget(t, conn, pid);
    char *copy = NULL;
    if (t->n == S_PREPARED_MAX || PQtransactionStatus(conn) == PQTRANS_INERROR ||
        !(copy = strdup(sql)))
        return NULL;
    s_prep_format(name, namelen, h);
    PGresult *res = PQprepare(conn, name, sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        free(copy);
        return res; /* what the plain run would have said: the statement does not parse */
    }
    PQclear(res);
    t->v[t->n++] = (s_prepared_t){.conn = conn, .pid = pid, .hash = h, .sql = copy};
    *out = name;
    return NULL;
}

/* Runs sql as prepared statement `name`, or as itself when name is NULL; see sc_pq_exec. */
static PGresult *s_exec(PGconn *conn, const char *name, const char *sql, int nparams,
                        const char *const *params, PGresult *res, int *rc)
{
    if (!res)
        res = name ? PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0)
                   : PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (rc)
            *rc = 0;
        return res;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    s_prep_t *t;
    if (name && state && strcmp(state, "26000") == 0 && (t = s_prep_get()))
        s_prep_forget(t, conn, 0); /* not prepared there after all: forget the connection */
    if (rc)
        *rc = sc_pq_error(conn, res);
    PQclear(res);
    return NULL;
}

PGresult *sc_pq_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, int *rc)
{
    char buf[64];
    const char *name;
    PGresult *res = s_prep_name(conn, sql, buf, sizeof buf, &name);
    return s_exec(conn, name, sql, nparams, params, res, rc);
}

PGresult *sc_pq_exec_fresh(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           int *rc)
{
    return s_exec(conn, NULL, sql, nparams, params, NULL, rc);
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
