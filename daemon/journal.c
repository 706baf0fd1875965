/*
 * Journal appends: a batch of events as binary arrays to core.journal_append, or an event alone
 * through one plain statement; one round trip either way.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One event alone, in its own transaction, as core.journal_append would journal it (004): its
 * number drawn under the journal's lock, a resend answered with the number it was journaled
 * under. An event alone in flight waits for this statement and its commit: through the
 * function's PL/pgSQL one event took 0.61 ms p50, through this 0.40-0.42 (refinsert). The
 * statement's snapshot is taken before the lock: a resend whose first copy another journal
 * writer committed in between would find nothing to answer with (no row comes back), and is
 * answered unavailable, so its sender sends it again.
 */
static const char s_one_sql[] =
    "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(7600002)),"
    " ins AS (INSERT INTO core.events (id, type, school, district, source, source_id,"
    "   occurred_at, received_at, actor, data)"
    "  SELECT nextval('core.events_id_seq'), $1::text, $2::text, $3::text, $4::text, $5::text,"
    "   $6::timestamptz, $7::timestamptz, $8::text, $9::jsonb FROM lock"
    "  ON CONFLICT (source, source_id) DO NOTHING RETURNING id)"
    " SELECT id AS event, false AS duplicate FROM ins"
    " UNION ALL SELECT e.id, true FROM core.events e"
    "  WHERE e.source = $4::text AND e.source_id = $5::text AND NOT EXISTS (SELECT 1 FROM ins)";

int sc__journal_prepare(PGconn *conn)
{
    PGresult *res = PQprepare(conn, "sc_journal_append",
                              "SELECT event, duplicate FROM core.journal_append($1::text[],"
                              " $2::text[], $3::text[], $4::text[], $5::text[],"
                              " $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[])",
                              9, NULL);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : sc_pq_error(conn, res);
    PQclear(res);
    if (rc == 0) {
        res = PQprepare(conn, "sc_journal_one", s_one_sql, 9, NULL);
        rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : sc_pq_error(conn, res);
        PQclear(res);
    }
    return rc;
}

/* A column's one element as a binary parameter: its bytes after the length (NULL: SQL NULL). */
static void s_scalar(const sc_pqbuf_t *col, const char **value, int *length)
{
    uint32_t len;
    memcpy(&len, col->p, 4);
    len = ntohl(len);
    *value = len == UINT32_MAX ? NULL : col->p + 4;
    *length = len == UINT32_MAX ? 0 : (int)len;
}

/* The element types of the columns, in argument order. */
static const uint32_t s_oids[SC__JCOLUMNS] = {
    SC_PQ_TEXTOID,        SC_PQ_TEXTOID,        SC_PQ_TEXTOID, SC_PQ_TEXTOID,  SC_PQ_TEXTOID,
    SC_PQ_TIMESTAMPTZOID, SC_PQ_TIMESTAMPTZOID, SC_PQ_TEXTOID, SC_PQ_JSONBOID,
};

static int s_text(sc_pqbuf_t *b, const char *s)
{
    return sc_pqfield_text(b, s, s ? strlen(s) : 0);
}

int sc__jcols_add(sc__jcols_t *c, const sc__jentry_t *e)
{
    size_t len[SC__JCOLUMNS];
    for (int f = 0; f < SC__JCOLUMNS; f++)
        len[f] = c->col[f].len;
    if (s_text(&c->col[0], e->type) < 0 || s_text(&c->col[1], e->school) < 0 ||
        s_text(&c->col[2], e->district) < 0 || s_text(&c->col[3], e->source) < 0 ||
        s_text(&c->col[4], e->source_id) < 0 || sc_pqfield_time(&c->col[5], e->occurred_at) < 0 ||
        sc_pqfield_time(&c->col[6], e->received_at) < 0 || s_text(&c->col[7], e->actor) < 0 ||
        sc_pqfield_jsonb(&c->col[8], e->data, e->data_len) < 0) {
        for (int f = 0; f < SC__JCOLUMNS; f++)
            c->col[f].len = len[f];
        return -ENOMEM;
    }
    c->n++;
    return 0;
}

void sc__jcols_reset(sc__jcols_t *c)
{
    for (int f = 0; f < SC__JCOLUMNS; f++)
        c->col[f].len = 0;
    c->n = 0;
}

void sc__jcols_free(sc__jcols_t *c)
{
    for (int f = 0; f < SC__JCOLUMNS; f++)
        sc_pqbuf_free(&c->col[f]);
    c->n = 0;
}

int sc__journal_send(PGconn *conn, const sc__jcols_t *const *parts, size_t nparts, sc__jcols_t *buf,
                     bool lone, char *err, size_t errlen)
{
    const char *values[SC__JCOLUMNS];
    int lengths[SC__JCOLUMNS], formats[SC__JCOLUMNS];
    size_t n = 0, at = 0;
    for (size_t k = 0; k < nparts; k++) {
        n += parts[k]->n;
        at = parts[k]->n ? k : at;
    }
    if (lone && n == 1) {
        for (int f = 0; f < SC__JCOLUMNS; f++) {
            s_scalar(&parts[at]->col[f], &values[f], &lengths[f]);
            formats[f] = 1;
        }
        /* Without its district, the function finds it from the school. */
        if (values[2]) {
            if (PQsendQueryPrepared(conn, "sc_journal_one", SC__JCOLUMNS, values, lengths, formats,
                                    0))
                return 0;
            snprintf(err, errlen, "could not journal 1 event: %s", PQerrorMessage(conn));
            return -EAGAIN;
        }
    }
    sc__jcols_reset(buf);
    for (int f = 0; f < SC__JCOLUMNS; f++) {
        sc_pqbuf_t *b = &buf->col[f];
        /* The header's has-null flag is not trusted by the server, which looks for itself. */
        if (sc_pqarray_begin(b, n, s_oids[f], true) < 0) {
            snprintf(err, errlen, "out of memory building a batch of %zu events", n);
            return -ENOMEM;
        }
        for (size_t k = 0; k < nparts; k++) {
            if (sc_pqbuf_put(b, parts[k]->col[f].p, parts[k]->col[f].len) < 0) {
                snprintf(err, errlen, "out of memory building a batch of %zu events", n);
                return -ENOMEM;
            }
        }
        values[f] = b->p;
        lengths[f] = (int)b->len;
        formats[f] = 1;
    }
    /* libpq copies the parameters out before it returns. */
    if (!PQsendQueryPrepared(conn, "sc_journal_append", SC__JCOLUMNS, values, lengths, formats,
                             0)) {
        snprintf(err, errlen, "could not journal %zu events: %s", n, PQerrorMessage(conn));
        return -EAGAIN;
    }
    return 0;
}

int sc__journal_receive(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen)
{
    int rc = 0;
    PGresult *res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "could not journal %zu events: %s", n, PQerrorMessage(conn));
        rc = sc_pq_error(conn, res);
    } else if (n == 1 && PQntuples(res) == 0) { /* see s_one_sql */
        snprintf(err, errlen,
                 "a resend's first copy was journaled while it was: its sender is"
                 " answered unavailable and sends it again");
        rc = -EIO;
    } else if ((size_t)PQntuples(res) != n) {
        snprintf(err, errlen, "journal_append answered %d rows for %zu events", PQntuples(res), n);
        rc = -EIO;
    } else {
        for (size_t i = 0; i < n; i++) {
            entries[i].event = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
            entries[i].duplicate = PQgetvalue(res, (int)i, 1)[0] == 't';
        }
    }
    PQclear(res);
    while ((res = PQgetResult(conn))) /* the end of the statement's results */
        PQclear(res);
    return rc;
}

int sc__journal_append(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen)
{
    sc__jcols_t cols = {0}, buf = {0};
    const sc__jcols_t *parts[1] = {&cols};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = sc__jcols_add(&cols, &entries[i]);
    if (rc < 0)
        snprintf(err, errlen, "out of memory building a batch of %zu events", n);
    else
        rc = sc__journal_send(conn, parts, 1, &buf, false, err, errlen);
    sc__jcols_free(&cols);
    sc__jcols_free(&buf);
    return rc < 0 ? rc : sc__journal_receive(conn, entries, n, err, errlen);
}

/*
 * Builds the published form of an event: the envelope with "event" added.
 * Returns a new string (caller frees) or NULL.
 */
char *sc__journal_envelope(const sc__jentry_t *e)
{
    char occurred[SC_TIME_LEN];
    json_t *data = json_loadb(e->data, e->data_len, JSON_DECODE_ANY, NULL);
    json_t *env = json_pack("{s:I, s:s, s:s?, s:s?, s:s, s:s?, s:s?, s:s, s:o?}", "event",
                            (json_int_t)e->event, "type", e->type, "school", e->school, "district",
                            e->district, "source", e->source, "id", e->source_id, "actor", e->actor,
                            "occurred_at", sc_time_format(e->occurred_at, occurred), "data", data);
    if (!env)
        return NULL;
    char *s = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    return s;
}
