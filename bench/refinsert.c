/* bench/refinsert.c: the reference: the same rows straight into a copy of core.events, no daemon.
 */
#include "../daemon/internal.h"
#include "bench.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_COLS 10
#define S_DUP_EVERY 100 /* 1 % of the rows repeat a (source, id) already stored, as in the load */

static const char *s_usage =
    "usage: refinsert --conninfo STR --out FILE [options]\n"
    "  --seconds S   time in the database per phase, at most 1.5 for one-row commits (default 5)\n"
    "  --batch N     rows per statement and per COPY (default 1000)\n"
    "  --label L     names this run in the output and in the rows' source (default ref)\n"
    "  --journal-conninfo STR  also call core.journal_append in this scratch database\n"
    "  --batched-only  the batched insert alone (the load generator's reference beside a step)\n";

static const char *const s_columns =
    "id, type, school, district, source, source_id, occurred_at, received_at, actor, data";

typedef struct s_ref {
    PGconn *db;
    const char *label;
    char source[64];
    char tag[24];
    size_t batch;
    double seconds;
    int64_t next_id;
    uint64_t next_seq;
} s_ref_t;

static int s_exec(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK
                 ? 0
                 : -EIO;
    if (rc < 0)
        fprintf(stderr, "refinsert: %s: %s", sql, PQerrorMessage(db));
    PQclear(res);
    return rc;
}

static int64_t s_wal_bytes(PGconn *db)
{
    PGresult *res = PQexec(db, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint");
    int64_t v =
        PQresultStatus(res) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return v;
}

/*
 * The events of the next batch: fresh ones, except every 100th, which repeats
 * one from the batch before (the resends the load generator makes).
 */
static void s_rows(s_ref_t *r, bench_event_t *evs, int64_t *ids, size_t n)
{
    sc_time_t now = bench_wall_us();
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = r->next_seq;
        if ((i + 1) % S_DUP_EVERY == 0 && seq > n)
            seq -= n; /* the same event as one of the previous batch */
        else
            r->next_seq++;
        bench_event_make(&evs[i], r->source, r->tag, 0, seq, now);
        ids[i] = r->next_id++;
    }
}

/* Ten binary arrays, one per column, in s_columns order. */
static int s_arrays(const bench_event_t *evs, const int64_t *ids, size_t n, sc_time_t received,
                    sc_pqbuf_t *b)
{
    bool actor_null = false;
    for (size_t i = 0; i < n; i++)
        actor_null |= !evs[i].actor[0];
    if (sc_pqarray_begin(&b[0], n, SC_PQ_INT8OID, false) < 0 ||
        sc_pqarray_begin(&b[1], n, SC_PQ_TEXTOID, false) < 0 ||
        sc_pqarray_begin(&b[2], n, SC_PQ_TEXTOID, false) < 0 ||
        sc_pqarray_begin(&b[3], n, SC_PQ_TEXTOID, false) < 0 ||
        sc_pqarray_begin(&b[4], n, SC_PQ_TEXTOID, false) < 0 ||
        sc_pqarray_begin(&b[5], n, SC_PQ_TEXTOID, false) < 0 ||
        sc_pqarray_begin(&b[6], n, SC_PQ_TIMESTAMPTZOID, false) < 0 ||
        sc_pqarray_begin(&b[7], n, SC_PQ_TIMESTAMPTZOID, false) < 0 ||
        sc_pqarray_begin(&b[8], n, SC_PQ_TEXTOID, actor_null) < 0 ||
        sc_pqarray_begin(&b[9], n, SC_PQ_JSONBOID, false) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const bench_event_t *e = &evs[i];
        if (sc_pqfield_int8(&b[0], ids[i]) < 0 ||
            sc_pqfield_text(&b[1], e->type, strlen(e->type)) < 0 ||
            sc_pqfield_text(&b[2], e->school, strlen(e->school)) < 0 ||
            sc_pqfield_text(&b[3], e->district, strlen(e->district)) < 0 ||
            sc_pqfield_text(&b[4], e->source, strlen(e->source)) < 0 ||
            sc_pqfield_text(&b[5], e->id, strlen(e->id)) < 0 ||
            sc_pqfield_time(&b[6], e->occurred_at) < 0 || sc_pqfield_time(&b[7], received) < 0 ||
            sc_pqfield_text(&b[8], e->actor[0] ? e->actor : NULL, strlen(e->actor)) < 0 ||
            sc_pqfield_jsonb(&b[9], e->data, e->data_len) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* One binary COPY tuple of ten fields. */
static int s_copy_row(sc_pqbuf_t *b, const bench_event_t *e, int64_t id, sc_time_t received)
{
    if (sc_pqbuf_put16(b, S_COLS) < 0 || sc_pqfield_int8(b, id) < 0 ||
        sc_pqfield_text(b, e->type, strlen(e->type)) < 0 ||
        sc_pqfield_text(b, e->school, strlen(e->school)) < 0 ||
        sc_pqfield_text(b, e->district, strlen(e->district)) < 0 ||
        sc_pqfield_text(b, e->source, strlen(e->source)) < 0 ||
        sc_pqfield_text(b, e->id, strlen(e->id)) < 0 || sc_pqfield_time(b, e->occurred_at) < 0 ||
        sc_pqfield_time(b, received) < 0 ||
        sc_pqfield_text(b, e->actor[0] ? e->actor : NULL, strlen(e->actor)) < 0 ||
        sc_pqfield_jsonb(b, e->data, e->data_len) < 0)
        return -ENOMEM;
    return 0;
}

/*
 * Batched INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING, one statement
 * (and one commit) per batch, one connection: what the ingest thread does,
 * without the daemon. Rates count rows offered, as the daemon's count acks.
 */
/*
 * A phase's figures: rows offered, seconds in the database, rows per second,
 * statement latencies, WAL bytes per row (null when the WAL position could not
 * be read). New reference; `lat` is left to the caller.
 */
static json_t *s_phase(uint64_t rows, int64_t busy_ns, bench_lat_t *lat, int64_t wal0, int64_t wal1)
{
    return json_pack(
        "{s:I, s:f, s:f, s:o, s:o}", "rows", (json_int_t)rows, "seconds", (double)busy_ns / 1e9,
        "rows_per_s", busy_ns ? (double)rows / ((double)busy_ns / 1e9) : 0.0, "statement_ms",
        bench_lat_summary(lat), "wal_bytes_per_row",
        wal0 >= 0 && wal1 >= wal0 && rows ? json_real((double)(wal1 - wal0) / (double)rows)
                                          : json_null());
}

static json_t *s_batched(s_ref_t *r)
{
    bench_event_t *evs = calloc(r->batch, sizeof *evs);
    int64_t *ids = calloc(r->batch, sizeof *ids);
    bench_lat_t lat = {0};
    json_t *out = NULL;
    uint64_t rows = 0, inserted = 0;
    int64_t busy = 0, wal0 = s_wal_bytes(r->db);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO bench_ref (%s) SELECT * FROM unnest($1::bigint[], $2::text[],"
             " $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],"
             " $8::timestamptz[], $9::text[], $10::jsonb[]) ON CONFLICT DO NOTHING",
             s_columns);
    if (!evs || !ids)
        goto out;
    int64_t wall_end = bench_mono_ns() + (int64_t)(r->seconds * 2e9);
    while (busy < (int64_t)(r->seconds * 1e9) && bench_mono_ns() < wall_end) {
        sc_pqbuf_t b[S_COLS] = {{0}};
        const char *values[S_COLS];
        int lengths[S_COLS], formats[S_COLS];
        s_rows(r, evs, ids, r->batch);
        int rc = s_arrays(evs, ids, r->batch, bench_wall_us(), b);
        for (int f = 0; f < S_COLS; f++) {
            values[f] = b[f].p;
            lengths[f] = (int)b[f].len;
            formats[f] = 1;
        }
        int64_t t0 = bench_mono_ns();
        PGresult *res =
            rc < 0 ? NULL : PQexecParams(r->db, sql, S_COLS, NULL, values, lengths, formats, 0);
        int64_t dt = bench_mono_ns() - t0;
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (ok)
            inserted += strtoull(PQcmdTuples(res), NULL, 10);
        else
            fprintf(stderr, "refinsert: batched insert: %s", PQerrorMessage(r->db));
        PQclear(res);
        for (int f = 0; f < S_COLS; f++)
            sc_pqbuf_free(&b[f]);
        if (!ok)
            goto out;
        busy += dt;
        rows += r->batch;
        bench_lat_add(&lat, dt);
    }
    out = s_phase(rows, busy, &lat, wal0, s_wal_bytes(r->db));
    if (out)
        json_object_set_new(out, "inserted", json_integer((json_int_t)inserted));
out:
    free(evs);
    free(ids);
    bench_lat_free(&lat);
    return out;
}

/*
 * The daemon's own SQL, core.journal_append, called straight from here with the
 * same binary arrays the ingest thread builds, in a scratch database holding
 * only the core schema (so no plugin reads what it writes): the cost of the
 * function itself, without the daemon, ZeroMQ or the plugins.
 */
static json_t *s_journal(s_ref_t *r, PGconn *db)
{
    bench_event_t *evs = calloc(r->batch, sizeof *evs);
    int64_t *ids = calloc(r->batch, sizeof *ids);
    bench_lat_t lat = {0};
    json_t *out = NULL;
    uint64_t rows = 0, dups = 0;
    int64_t busy = 0, wal0 = s_wal_bytes(db);
    /* The directory the journal fills districts from, as in the daemon's database. */
    for (int i = 1; i <= BENCH_SCHOOLS; i++) {
        char school[16];
        snprintf(school, sizeof school, "sch-b%02d", i);
        const char *p[2] = {school, BENCH_DISTRICT};
        PGresult *res = PQexecParams(db,
                                     "INSERT INTO core.schools (school, name, district, timezone)"
                                     " VALUES ($1, $1, $2, 'Asia/Shanghai') ON CONFLICT DO NOTHING",
                                     2, NULL, p, NULL, NULL, 0);
        PQclear(res);
    }
    if (!evs || !ids)
        goto out;
    int64_t wall_end = bench_mono_ns() + (int64_t)(r->seconds * 2e9);
    while (busy < (int64_t)(r->seconds * 1e9) && bench_mono_ns() < wall_end) {
        sc_pqbuf_t b[9] = {{0}};
        const char *values[9];
        int lengths[9], formats[9], rc = 0;
        sc_time_t received = bench_wall_us();
        s_rows(r, evs, ids, r->batch);
        bool actor_null = false;
        for (size_t i = 0; i < r->batch; i++)
            actor_null |= !evs[i].actor[0];
        /* The district as the ingest thread passes it, from the schools it knows. */
        for (int f = 0; f < 5 && rc == 0; f++)
            rc = sc_pqarray_begin(&b[f], r->batch, SC_PQ_TEXTOID, false);
        if (rc == 0)
            rc = sc_pqarray_begin(&b[5], r->batch, SC_PQ_TIMESTAMPTZOID, false) |
                 sc_pqarray_begin(&b[6], r->batch, SC_PQ_TIMESTAMPTZOID, false) |
                 sc_pqarray_begin(&b[7], r->batch, SC_PQ_TEXTOID, actor_null) |
                 sc_pqarray_begin(&b[8], r->batch, SC_PQ_JSONBOID, false);
        for (size_t i = 0; i < r->batch && rc == 0; i++) {
            const bench_event_t *e = &evs[i];
            rc = sc_pqfield_text(&b[0], e->type, strlen(e->type)) |
                 sc_pqfield_text(&b[1], e->school, strlen(e->school)) |
                 sc_pqfield_text(&b[2], e->district, strlen(e->district)) |
                 sc_pqfield_text(&b[3], e->source, strlen(e->source)) |
                 sc_pqfield_text(&b[4], e->id, strlen(e->id)) |
                 sc_pqfield_time(&b[5], e->occurred_at) | sc_pqfield_time(&b[6], received) |
                 sc_pqfield_text(&b[7], e->actor[0] ? e->actor : NULL, strlen(e->actor)) |
                 sc_pqfield_jsonb(&b[8], e->data, e->data_len);
        }
        for (int f = 0; f < 9; f++) {
            values[f] = b[f].p;
            lengths[f] = (int)b[f].len;
            formats[f] = 1;
        }
        int64_t t0 = bench_mono_ns();
        PGresult *res =
            rc < 0 ? NULL
                   : PQexecParams(db,
                                  "SELECT event, duplicate FROM core.journal_append($1::text[],"
                                  " $2::text[], $3::text[], $4::text[], $5::text[],"
                                  " $6::timestamptz[], $7::timestamptz[], $8::text[],"
                                  " $9::jsonb[])",
                                  9, NULL, values, lengths, formats, 0);
        int64_t dt = bench_mono_ns() - t0;
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && (size_t)PQntuples(res) == r->batch;
        for (int i = 0; ok && i < PQntuples(res); i++)
            dups += PQgetvalue(res, i, 1)[0] == 't';
        if (!ok)
            fprintf(stderr, "refinsert: journal_append: %s", PQerrorMessage(db));
        PQclear(res);
        for (int f = 0; f < 9; f++)
            sc_pqbuf_free(&b[f]);
        if (!ok)
            goto out;
        busy += dt;
        rows += r->batch;
        bench_lat_add(&lat, dt);
    }
    out = s_phase(rows, busy, &lat, wal0, s_wal_bytes(db));
    if (out)
        json_object_set_new(out, "duplicates", json_integer((json_int_t)dups));
out:
    free(evs);
    free(ids);
    bench_lat_free(&lat);
    return out;
}

/*
 * One event a statement, each its own synchronous commit, as the ingest thread journals an
 * event alone: the daemon's own code (sc__journal_send with `lone`, the one-event statement
 * sc__journal_prepare makes) on the daemon's kind of connection. The part of an event alone's
 * latency the database takes.
 */
static json_t *s_journal_lone(s_ref_t *r, PGconn *db)
{
    bench_lat_t lat = {0};
    json_t *out = NULL;
    uint64_t rows = 0, dups = 0;
    int64_t busy = 0, wal0 = s_wal_bytes(db);
    sc__jcols_t cols = {0}, buf = {0};
    const sc__jcols_t *parts[1] = {&cols};
    char err[1024];
    if (sc__journal_prepare(db) < 0) {
        fprintf(stderr, "refinsert: could not prepare the journal's statements: %s",
                PQerrorMessage(db));
        return NULL;
    }
    int64_t wall_end = bench_mono_ns() + (int64_t)(r->seconds * 2e9);
    while (busy < (int64_t)(r->seconds * 1e9) && bench_mono_ns() < wall_end) {
        bench_event_t ev;
        int64_t id;
        s_rows(r, &ev, &id, 1);
        sc__jentry_t e = {.type = ev.type,
                          .school = ev.school,
                          .district = ev.district,
                          .source = ev.source,
                          .source_id = ev.id,
                          .occurred_at = ev.occurred_at,
                          .received_at = bench_wall_us(),
                          .actor = ev.actor[0] ? ev.actor : NULL,
                          .data = ev.data,
                          .data_len = ev.data_len};
        sc__jcols_reset(&cols);
        if (sc__jcols_add(&cols, &e) < 0)
            goto out;
        int64_t t0 = bench_mono_ns();
        int rc = sc__journal_send(db, parts, 1, &buf, true, err, sizeof err);
        if (rc == 0)
            rc = sc__journal_receive(db, &e, 1, err, sizeof err);
        int64_t dt = bench_mono_ns() - t0;
        if (rc < 0) {
            fprintf(stderr, "refinsert: one event alone: %s\n", err);
            goto out;
        }
        dups += e.duplicate;
        busy += dt;
        rows++;
        bench_lat_add(&lat, dt);
    }
    out = s_phase(rows, busy, &lat, wal0, s_wal_bytes(db));
    if (out)
        json_object_set_new(out, "duplicates", json_integer((json_int_t)dups));
out:
    sc__jcols_free(&cols);
    sc__jcols_free(&buf);
    bench_lat_free(&lat);
    return out;
}

/* Binary COPY of fresh rows, one COPY (one commit) per batch. */
static json_t *s_copy(s_ref_t *r)
{
    static const char head[] = "PGCOPY\n\377\r\n"; /* with its NUL: the 11-byte signature */
    bench_event_t *evs = calloc(r->batch, sizeof *evs);
    int64_t *ids = calloc(r->batch, sizeof *ids);
    bench_lat_t lat = {0};
    json_t *out = NULL;
    uint64_t rows = 0;
    int64_t busy = 0, wal0 = s_wal_bytes(r->db);
    char sql[256];
    snprintf(sql, sizeof sql, "COPY bench_ref (%s) FROM STDIN (FORMAT binary)", s_columns);
    if (!evs || !ids)
        goto out;
    int64_t wall_end = bench_mono_ns() + (int64_t)(r->seconds * 2e9);
    while (busy < (int64_t)(r->seconds * 1e9) && bench_mono_ns() < wall_end) {
        sc_pqbuf_t b = {0};
        sc_time_t received = bench_wall_us();
        /* COPY cannot skip conflicts: every row is new. */
        for (size_t i = 0; i < r->batch; i++) {
            bench_event_make(&evs[i], r->source, r->tag, 1, r->next_seq++, received);
            ids[i] = r->next_id++;
        }
        int rc = sc_pqbuf_put(&b, head, sizeof head) < 0 || sc_pqbuf_put32(&b, 0) < 0 ||
                         sc_pqbuf_put32(&b, 0) < 0
                     ? -ENOMEM
                     : 0;
        for (size_t i = 0; rc == 0 && i < r->batch; i++)
            rc = s_copy_row(&b, &evs[i], ids[i], received);
        if (rc == 0)
            rc = sc_pqbuf_put16(&b, 0xffff);
        int64_t t0 = bench_mono_ns();
        PGresult *res = rc < 0 ? NULL : PQexec(r->db, sql);
        bool ok = PQresultStatus(res) == PGRES_COPY_IN;
        PQclear(res);
        if (ok) {
            ok = PQputCopyData(r->db, b.p, (int)b.len) == 1 && PQputCopyEnd(r->db, NULL) == 1;
            res = PQgetResult(r->db);
            ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
            PQclear(res);
            while ((res = PQgetResult(r->db)))
                PQclear(res);
        }
        int64_t dt = bench_mono_ns() - t0;
        sc_pqbuf_free(&b);
        if (!ok) {
            fprintf(stderr, "refinsert: copy: %s", PQerrorMessage(r->db));
            goto out;
        }
        busy += dt;
        rows += r->batch;
        bench_lat_add(&lat, dt);
    }
    out = s_phase(rows, busy, &lat, wal0, s_wal_bytes(r->db));
out:
    free(evs);
    free(ids);
    bench_lat_free(&lat);
    return out;
}

/*
 * One-row INSERTs, each its own synchronous commit: the floor under any
 * acknowledged event. Also "SELECT 1", the client-server round trip alone.
 */
static json_t *s_singles(s_ref_t *r, bool commit)
{
    bench_lat_t lat = {0};
    json_t *out = NULL;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO bench_ref (%s) VALUES ($1::bigint, $2, $3, $4, $5, $6,"
             " $7::timestamptz, $8::timestamptz, $9, $10::jsonb)",
             s_columns);
    PGresult *res = PQprepare(r->db, commit ? "single" : "select1", commit ? sql : "SELECT 1",
                              commit ? S_COLS : 0, NULL);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        fprintf(stderr, "refinsert: prepare: %s", PQerrorMessage(r->db));
        return NULL;
    }
    double seconds = r->seconds < 1.5 ? r->seconds : 1.5;
    int64_t end = bench_mono_ns() + (int64_t)(seconds * 1e9);
    for (int i = 0; i < 5000 && bench_mono_ns() < end; i++) {
        bench_event_t ev;
        char id[24], occurred[SC_TIME_LEN], received[SC_TIME_LEN], data[sizeof ev.data + 1];
        sc_time_t now = bench_wall_us();
        bench_event_make(&ev, r->source, r->tag, 2, r->next_seq++, now);
        snprintf(id, sizeof id, "%lld", (long long)r->next_id++);
        snprintf(data, sizeof data, "%.*s", (int)ev.data_len, ev.data);
        const char *values[S_COLS] = {id,
                                      ev.type,
                                      ev.school,
                                      ev.district,
                                      ev.source,
                                      ev.id,
                                      sc_time_format(ev.occurred_at, occurred),
                                      sc_time_format(now, received),
                                      ev.actor[0] ? ev.actor : NULL,
                                      data};
        int64_t t0 = bench_mono_ns();
        res = PQexecPrepared(r->db, commit ? "single" : "select1", commit ? S_COLS : 0,
                             commit ? values : NULL, NULL, NULL, 0);
        int64_t dt = bench_mono_ns() - t0;
        ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        if (!ok) {
            fprintf(stderr, "refinsert: single insert: %s", PQerrorMessage(r->db));
            goto out;
        }
        bench_lat_add(&lat, dt);
    }
    out = json_pack("{s:o}", "latency_ms", bench_lat_summary(&lat));
out:
    bench_lat_free(&lat);
    return out;
}

static json_t *s_settings(PGconn *db)
{
    json_t *out = json_object();
    PGresult *res = PQexec(db, "SELECT name, setting FROM pg_settings WHERE name IN"
                               " ('fsync', 'synchronous_commit', 'full_page_writes',"
                               "  'wal_sync_method', 'shared_buffers', 'max_wal_size',"
                               "  'server_version', 'commit_delay', 'wal_buffers')");
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++)
        json_object_set_new(out, PQgetvalue(res, i, 0), json_string(PQgetvalue(res, i, 1)));
    PQclear(res);
    return out;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"conninfo", required_argument, NULL, 'd'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"batch", required_argument, NULL, 'b'},
                                             {"label", required_argument, NULL, 'l'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"journal-conninfo", required_argument, NULL, 'j'},
                                             {"batched-only", no_argument, NULL, 'B'},
                                             {NULL, 0, NULL, 0}};
    const char *conninfo = NULL, *path = NULL, *jconninfo = NULL;
    PGconn *jdb = NULL;
    s_ref_t r = {.label = "ref", .batch = 1000, .seconds = 5, .next_id = 1, .next_seq = 1};
    json_t *result = NULL, *batched = NULL, *copy = NULL, *single = NULL, *select1 = NULL,
           *journal_one = NULL, *journal_lone = NULL;
    json_t *journal = NULL;
    int c, rc = 1;
    bool batched_only = false;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            conninfo = optarg;
            break;
        case 'o':
            path = optarg;
            break;
        case 's':
            r.seconds = atof(optarg);
            break;
        case 'b':
            r.batch = (size_t)atol(optarg);
            break;
        case 'l':
            r.label = optarg;
            break;
        case 'j':
            jconninfo = optarg;
            break;
        case 'B':
            batched_only = true;
            break;
        default:
            fputs(s_usage, stderr);
            return 2;
        }
    }
    if (!conninfo || !path || r.seconds <= 0 || r.batch < 1 || r.batch > 100000) {
        fputs(s_usage, stderr);
        return 2;
    }
    snprintf(r.source, sizeof r.source, "ref-%s", r.label);
    snprintf(r.tag, sizeof r.tag, "x%06x",
             (unsigned)(bench_mix((uint64_t)bench_mono_ns()) & 0xffffff));
    r.db = PQconnectdb(conninfo);
    if (PQstatus(r.db) != CONNECTION_OK) {
        fprintf(stderr, "refinsert: could not connect to \"%s\": %s", conninfo,
                PQerrorMessage(r.db));
        goto out;
    }
    /* The same shape, keys and indexes as the journal; emptied before each phase. */
    if (s_exec(r.db, "SET client_min_messages = warning") < 0 ||
        s_exec(r.db, "CREATE TABLE IF NOT EXISTS bench_ref (LIKE core.events INCLUDING ALL)") < 0 ||
        s_exec(r.db, "TRUNCATE bench_ref") < 0)
        goto out;
    fprintf(stderr, "refinsert: %s: batched insert ...", r.label);
    if (!(batched = s_batched(&r)) || s_exec(r.db, "TRUNCATE bench_ref") < 0)
        goto out;
    if (batched_only) {
        fprintf(stderr, " %.0f rows/s\n", sc_json_num(batched, "rows_per_s", 0));
        goto write;
    }
    if (jconninfo) {
        jdb = PQconnectdb(jconninfo);
        if (PQstatus(jdb) != CONNECTION_OK) {
            fprintf(stderr, "refinsert: could not connect to \"%s\": %s", jconninfo,
                    PQerrorMessage(jdb));
            goto out;
        }
        fprintf(stderr, " %.0f rows/s; journal_append ...", sc_json_num(batched, "rows_per_s", 0));
        if (!(journal = s_journal(&r, jdb)) || s_exec(jdb, "TRUNCATE core.events") < 0)
            goto out;
        /* One row a call, each its own synchronous commit: what one event alone costs the
         * journal, beside the plain one-row commit below. */
        size_t batch = r.batch;
        double seconds = r.seconds;
        r.batch = 1;
        r.seconds = seconds < 1 ? seconds : 1;
        journal_one = s_journal(&r, jdb);
        if (journal_one && s_exec(jdb, "TRUNCATE core.events") == 0)
            journal_lone = s_journal_lone(&r, jdb);
        r.batch = batch;
        r.seconds = seconds;
        if (!journal_one || !journal_lone || s_exec(jdb, "TRUNCATE core.events") < 0)
            goto out;
        fprintf(stderr, " %.0f rows/s; copy ...", sc_json_num(journal, "rows_per_s", 0));
    } else {
        fprintf(stderr, " %.0f rows/s; copy ...", sc_json_num(batched, "rows_per_s", 0));
    }
    if (!(copy = s_copy(&r)) || s_exec(r.db, "TRUNCATE bench_ref") < 0)
        goto out;
    fprintf(stderr, " %.0f rows/s; single commits ...", sc_json_num(copy, "rows_per_s", 0));
    if (!(single = s_singles(&r, true)) || !(select1 = s_singles(&r, false)) ||
        s_exec(r.db, "TRUNCATE bench_ref") < 0)
        goto out;
    fprintf(stderr, " p50 %.3f ms\n", sc_json_num(json_object_get(single, "latency_ms"), "p50", 0));
write:;
    char now[SC_TIME_LEN];
    result = json_pack("{s:s, s:s, s:I, s:O, s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:o}", "label",
                       r.label, "finished_at", sc_time_format(bench_wall_us(), now), "batch_rows",
                       (json_int_t)r.batch, "batched_insert", batched, "journal_append", journal,
                       "journal_append_one", journal_one, "journal_one", journal_lone, "copy", copy,
                       "single_commit", single, "select1", select1, "settings", s_settings(r.db));
    if (!result || json_dump_file(result, path, JSON_INDENT(1)) < 0) {
        fprintf(stderr, "refinsert: could not write %s\n", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(result);
    json_decref(batched);
    json_decref(copy);
    json_decref(single);
    json_decref(select1);
    json_decref(journal);
    json_decref(journal_one);
    json_decref(journal_lone);
    PQfinish(jdb);
    PQfinish(r.db);
    return rc;
}
