/* A test plugin: records what it handles, fails or sleeps on request, fires timers. */
#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PROBE_NAME
#define PROBE_NAME "probe"
#endif
#define S PROBE_NAME /* the schema has the plugin's name */

/* Attempts per event that asked to fail, kept in memory like a flaky dependency would. */
typedef struct s_state {
    int64_t event[64];
    int attempts[64];
    bool end_fails; /* a "probe.fail" of mode at_end is in the open batch */
} s_state_t;

static int s_event(const sc_event_t *ev, char *detail, size_t dlen)
{
    return sc_check_int(ev->data, "data.", "n", true, 0, 1000000000, detail, dlen);
}

static int s_fail(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const modes[] = {"permanent", "transient", "at_end", NULL};
    int rc;
    if ((rc = sc_check_enum(ev->data, "data.", "mode", true, modes, detail, dlen)) < 0)
        return rc;
    return sc_check_int(ev->data, "data.", "times", true, 0, 1000, detail, dlen);
}

static int s_timer(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_code(ev->data, "data.", "name", true, detail, dlen)) < 0)
        return rc;
    return sc_check_time(ev->data, "data.", "at", true, detail, dlen);
}

static const struct sc_type s_types[] = {
    {PROBE_NAME ".event", 0, s_event},
    {PROBE_NAME ".fail", 0, s_fail},
    {PROBE_NAME ".timer", 0, s_timer},
    {PROBE_NAME ".echo", 0, NULL},
    {PROBE_NAME ".echoed", SC_TYPE_EMITTED, NULL},
    {PROBE_NAME ".fired", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};

static const struct sc_config_key s_config[] = {
    {"delay_ms", SC_CFG_INT, "0", "sleep this long in every handle()"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_migration s_migrations[] = {
    {1, "001_" PROBE_NAME ".sql",
     "CREATE SCHEMA " S ";"
     "CREATE TABLE " S ".handled (event bigint NOT NULL, type text NOT NULL, n integer,"
     "  handled_at timestamptz NOT NULL DEFAULT clock_timestamp());"
     "CREATE TABLE " S ".timers (name text PRIMARY KEY, due timestamptz NOT NULL,"
     "  fired_at timestamptz);"},
    /* Everything handle() was given, as it saw it: plugins must see the same event whether
     * the daemon took it from memory or read it back from the journal. */
    {2, "002_" PROBE_NAME "_seen.sql", "ALTER TABLE " S ".handled ADD COLUMN seen text;"},
    {0, NULL, NULL},
};

static int s_init(sc_ctx_t *ctx, void **state)
{
    (void)ctx;
    *state = calloc(1, sizeof(s_state_t));
    return *state ? 0 : -ENOMEM;
}

static int s_attempt(s_state_t *st, int64_t id)
{
    for (int i = 0; i < 64; i++)
        if (st->event[i] == id)
            return ++st->attempts[i];
    memmove(st->event + 1, st->event, sizeof st->event - sizeof st->event[0]);
    memmove(st->attempts + 1, st->attempts, sizeof st->attempts - sizeof st->attempts[0]);
    st->event[0] = id;
    st->attempts[0] = 1;
    return 1;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    json_int_t delay = sc_json_int(sc_config(ctx), "delay_ms", 0);
    if (delay > 0) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    if (strcmp(ev->type, PROBE_NAME ".fail") == 0) {
        int attempt = s_attempt(state, ev->id);
        bool at_end = strcmp(sc_json_str(ev->data, "mode"), "at_end") == 0;
        if (at_end && attempt <= sc_json_int(ev->data, "times", 0)) {
            ((s_state_t *)state)->end_fails = true; /* handled now, failing at the batch's end */
        } else if (!at_end && attempt <= sc_json_int(ev->data, "times", 0)) {
            bool transient = strcmp(sc_json_str(ev->data, "mode"), "transient") == 0;
            SC_LOG_ERR(ctx, "failing event %lld on purpose (attempt %d)", (long long)ev->id,
                       attempt);
            return transient ? -EAGAIN : -EIO;
        }
    }
    char id[24], n[24], occurred[SC_TIME_LEN], received[SC_TIME_LEN];
    snprintf(id, sizeof id, "%lld", (long long)ev->id);
    snprintf(n, sizeof n, "%lld", (long long)sc_json_int(ev->data, "n", -1));
    /* The school's time zone as the directory gives it while the event is handled. */
    json_t *school = ev->school ? ctx->host->school(ctx, ev->school) : NULL;
    json_t *seen = json_pack("{s:s, s:s?, s:s?, s:s, s:s?, s:s?, s:s, s:s, s:O, s:s?}", "type",
                             ev->type, "school", ev->school, "district", ev->district, "source",
                             ev->source, "id", ev->source_id, "actor", ev->actor, "occurred_at",
                             sc_time_format(ev->occurred_at, occurred), "received_at",
                             sc_time_format(ev->received_at, received), "data", ev->data,
                             "timezone", sc_json_str(school, "timezone"));
    json_decref(school);
    char *seen_text = seen ? json_dumps(seen, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(seen);
    if (!seen_text)
        return -ENOMEM;
    const char *p[4] = {id, ev->type, n, seen_text};
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "INSERT INTO " S ".handled (event, type, n, seen)"
                               " VALUES ($1, $2, $3, $4)",
                               4, p, &rc);
    free(seen_text);
    if (!res)
        return rc;
    PQclear(res);
    if (strcmp(ev->type, PROBE_NAME ".timer") == 0) {
        const char *t[2] = {sc_json_str(ev->data, "name"), sc_json_str(ev->data, "at")};
        res = sc_pq_exec(sc_db(ctx),
                         "INSERT INTO " S ".timers (name, due) VALUES ($1, $2)"
                         " ON CONFLICT (name) DO UPDATE SET due = EXCLUDED.due, fired_at = NULL",
                         2, t, &rc);
        if (!res)
            return rc;
        PQclear(res);
    } else if (strcmp(ev->type, PROBE_NAME ".echo") == 0) {
        json_t *data = json_pack("{s:I}", "of", (json_int_t)ev->id);
        rc = sc_emit(
            ctx, &(sc_emit_t){.type = PROBE_NAME ".echoed", .school = ev->school, .data = data});
        json_decref(data);
        return rc;
    }
    return 0;
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    (void)state;
    char when[SC_TIME_LEN];
    const char *p[1] = {sc_time_format(now, when)};
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "UPDATE " S ".timers SET fired_at = $1"
                               " WHERE fired_at IS NULL AND due <= $1 RETURNING name, due",
                               1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *data = json_pack("{s:s, s:s}", "name", PQgetvalue(res, i, 0), "due",
                                 sc_time_format(sc_pq_time(res, i, 1, 0), when));
        rc = sc_emit(ctx, &(sc_emit_t){.type = PROBE_NAME ".fired",
                                       .school = "sch-001",
                                       .occurred_at = sc_pq_time(res, i, 1, 0),
                                       .data = data});
        json_decref(data);
        if (rc < 0)
            break;
    }
    PQclear(res);
    if (rc < 0)
        return rc;
    res = sc_pq_exec(sc_db(ctx), "SELECT min(due) FROM " S ".timers WHERE fired_at IS NULL", 0,
                     NULL, &rc);
    if (!res)
        return rc;
    *next = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    (void)state;
    const char *what = sc_json_str(req, "what");
    if (!what || strcmp(what, "count") != 0) {
        *reply = json_pack("{s:s}", "error", "what: must be one of count");
        return -EINVAL;
    }
    int rc;
    PGresult *res =
        sc_pq_exec(sc_db(ctx),
                   "SELECT count(*) AS handled, count(DISTINCT event) AS distinct_events"
                   "  FROM " S ".handled",
                   0, NULL, &rc);
    if (!res)
        return rc;
    *reply = json_incref(json_array_get(sc_pq_rows(res), 0));
    PQclear(res);
    return 0;
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    free(state);
}

static const char *const s_subscribe[] = {PROBE_NAME ".", NULL};

/* A batch holding a "probe.fail" of mode at_end fails here, as deferred writes might. */
static int s_end_batch(sc_ctx_t *ctx, void *state, bool keep)
{
    s_state_t *st = state;
    bool fail = st->end_fails;
    st->end_fails = false;
    if (keep && fail) {
        SC_LOG_ERR(ctx, "failing the end of a batch on purpose");
        return -EIO;
    }
    return 0;
}

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = PROBE_NAME,
    .version = "1.0",
    .description = "test plugin: records, fails, sleeps and fires timers on request",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config,
    .migrations = s_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
    .end_batch = s_end_batch,
};

SC_PLUGIN_DEFINE(s_plugin)
