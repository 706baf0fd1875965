/* Journal appends: a batch of events as binary arrays to core.journal_append, one round trip. */
#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Element type OIDs (pg_type.h) of the arrays the function takes. */
enum { S_TEXTOID = 25, S_TIMESTAMPTZOID = 1184, S_JSONBOID = 3802 };

/* Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01. */
#define S_PG_EPOCH_USEC (INT64_C(946684800) * SC_USEC_PER_SEC)

typedef struct s_buf {
    char *p;
    size_t len, cap;
} s_buf_t;

static int s_reserve(s_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void s_put32(s_buf_t *b, uint32_t v)
{
    v = htonl(v);
    memcpy(b->p + b->len, &v, 4);
    b->len += 4;
}

static void s_put64(s_buf_t *b, uint64_t v)
{
    s_put32(b, (uint32_t)(v >> 32));
    s_put32(b, (uint32_t)v);
}

/* Array header: one dimension of n elements; element bytes follow. */
static int s_header(s_buf_t *b, size_t n, uint32_t oid, bool has_null)
{
    if (s_reserve(b, 20) < 0)
        return -ENOMEM;
    s_put32(b, n ? 1 : 0);
    s_put32(b, has_null);
    s_put32(b, oid);
    if (n) {
        s_put32(b, (uint32_t)n);
        s_put32(b, 1);
    }
    return 0;
}

static int s_text(s_buf_t *b, const char *s, size_t len, bool jsonb)
{
    if (!s) {
        if (s_reserve(b, 4) < 0)
            return -ENOMEM;
        s_put32(b, UINT32_MAX); /* -1: NULL */
        return 0;
    }
    if (s_reserve(b, 5 + len) < 0)
        return -ENOMEM;
    s_put32(b, (uint32_t)(len + jsonb));
    if (jsonb)
        b->p[b->len++] = 1; /* jsonb's binary format version */
    memcpy(b->p + b->len, s, len);
    b->len += len;
    return 0;
}

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

int sc__journal_append(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen)
{
    s_buf_t bufs[9] = {{0}};
    int rc = -ENOMEM;
    PGresult *res = NULL;

    for (size_t f = 0; f < 5; f++) {
        bool has_null = false;
        for (size_t i = 0; i < n; i++)
            has_null |= s_field(&entries[i], s_text_fields[f]) == NULL;
        if (s_header(&bufs[f], n, S_TEXTOID, has_null) < 0)
            goto out;
        for (size_t i = 0; i < n; i++) {
            const char *s = s_field(&entries[i], s_text_fields[f]);
            if (s_text(&bufs[f], s, s ? strlen(s) : 0, false) < 0)
                goto out;
        }
    }
    for (size_t f = 5; f < 7; f++) {
        if (s_header(&bufs[f], n, S_TIMESTAMPTZOID, false) < 0 || s_reserve(&bufs[f], n * 12) < 0)
            goto out;
        for (size_t i = 0; i < n; i++) {
            sc_time_t t = f == 5 ? entries[i].occurred_at : entries[i].received_at;
            s_put32(&bufs[f], 8);
            s_put64(&bufs[f], (uint64_t)(t - S_PG_EPOCH_USEC));
        }
    }
    bool actor_null = false;
    for (size_t i = 0; i < n; i++)
        actor_null |= entries[i].actor == NULL;
    if (s_header(&bufs[7], n, S_TEXTOID, actor_null) < 0 ||
        s_header(&bufs[8], n, S_JSONBOID, false) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *a = entries[i].actor;
        if (s_text(&bufs[7], a, a ? strlen(a) : 0, false) < 0 ||
            s_text(&bufs[8], entries[i].data, entries[i].data_len, true) < 0)
            goto out;
    }

    const char *values[9];
    int lengths[9], formats[9];
    for (int f = 0; f < 9; f++) {
        values[f] = bufs[f].p;
        lengths[f] = (int)bufs[f].len;
        formats[f] = 1;
    }
    res = PQexecPrepared(conn, "sc_journal_append", 9, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "could not journal %zu events: %s", n, PQerrorMessage(conn));
        rc = sc_pq_error(conn, res);
        goto out;
    }
    if ((size_t)PQntuples(res) != n) {
        snprintf(err, errlen, "journal_append answered %d rows for %zu events", PQntuples(res), n);
        rc = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        entries[i].event = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        entries[i].duplicate = PQgetvalue(res, (int)i, 1)[0] == 't';
    }
    rc = 0;
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory building a batch of %zu events", n);
    PQclear(res);
    for (int f = 0; f < 9; f++)
        free(bufs[f].p);
    return rc;
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
