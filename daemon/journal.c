/* Journal appends: a batch of events as binary arrays to core.journal_append, one round trip. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets of the fields of sc__jentry_t that go into text arrays, in argument order. */
static const size_t s_text_fields[] = {
    offsetof(sc__jentry_t, type),      offsetof(sc__jentry_t, school),
    offsetof(sc__jentry_t, district),  offsetof(sc__jentry_t, source),
    offsetof(sc__jentry_t, source_id),
};

static const char *s_field(const sc__jentry_t *e, size_t off)
{
    return *(const char *const *)((const char *)e + off);
}

int sc__journal_prepare(PGconn *conn)
{
    PGresult *res = PQprepare(conn, "sc_journal_append",
                              "SELECT event, duplicate FROM core.journal_append($1::text[],"
                              " $2::text[], $3::text[], $4::text[], $5::text[],"
                              " $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[])",
                              9, NULL);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : sc_pq_error(conn, res);
    PQclear(res);
    return rc;
}

int sc__journal_send(PGconn *conn, const sc__jentry_t *entries, size_t n, char *err, size_t errlen)
{
    sc_pqbuf_t bufs[9] = {{0}};
    int rc = -ENOMEM;

    for (size_t f = 0; f < 5; f++) {
        bool has_null = false;
        for (size_t i = 0; i < n; i++)
            has_null |= s_field(&entries[i], s_text_fields[f]) == NULL;
        if (sc_pqarray_begin(&bufs[f], n, SC_PQ_TEXTOID, has_null) < 0)
            goto out;
        for (size_t i = 0; i < n; i++) {
            const char *s = s_field(&entries[i], s_text_fields[f]);
            if (sc_pqfield_text(&bufs[f], s, s ? strlen(s) : 0) < 0)
                goto out;
        }
    }
    bool actor_null = false;
    for (size_t i = 0; i < n; i++)
        actor_null |= entries[i].actor == NULL;
    if (sc_pqarray_begin(&bufs[5], n, SC_PQ_TIMESTAMPTZOID, false) < 0 ||
        sc_pqarray_begin(&bufs[6], n, SC_PQ_TIMESTAMPTZOID, false) < 0 ||
        sc_pqarray_begin(&bufs[7], n, SC_PQ_TEXTOID, actor_null) < 0 ||
        sc_pqarray_begin(&bufs[8], n, SC_PQ_JSONBOID, false) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *a = entries[i].actor;
        if (sc_pqfield_time(&bufs[5], entries[i].occurred_at) < 0 ||
            sc_pqfield_time(&bufs[6], entries[i].received_at) < 0 ||
            sc_pqfield_text(&bufs[7], a, a ? strlen(a) : 0) < 0 ||
            sc_pqfield_jsonb(&bufs[8], entries[i].data, entries[i].data_len) < 0)
            goto out;
    }

    const char *values[9];
    int lengths[9], formats[9];
    for (int f = 0; f < 9; f++) {
        values[f] = bufs[f].p;
        lengths[f] = (int)bufs[f].len;
        formats[f] = 1;
    }
    /* libpq copies the parameters out before it returns: the buffers can go. */
    if (!PQsendQueryPrepared(conn, "sc_journal_append", 9, values, lengths, formats, 0)) {
        snprintf(err, errlen, "could not journal %zu events: %s", n, PQerrorMessage(conn));
        rc = -EAGAIN;
        goto out;
    }
    rc = 0;
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory building a batch of %zu events", n);
    for (int f = 0; f < 9; f++)
        sc_pqbuf_free(&bufs[f]);
    return rc;
}

int sc__journal_receive(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen)
{
    int rc = 0;
    PGresult *res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "could not journal %zu events: %s", n, PQerrorMessage(conn));
        rc = sc_pq_error(conn, res);
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
    int rc = sc__journal_send(conn, entries, n, err, errlen);
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
