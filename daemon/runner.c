/*
 * Plugin runners: one thread per plugin, each with its own connection. A
 * runner reads the events its plugin subscribes to after its cursor and hands
 * them to handle(); the plugin's writes, the cursor and the events it emitted
 * commit in one transaction, so every event is handled exactly once.
 */
#include "internal.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

/* Journal ids a plugin reads through per statement when few of them are its types. */
#define S_WINDOW 16384

enum s_state { S_STARTING, S_RUNNING, S_BACKOFF, S_DISCONNECTED, S_FAILED, S_STOPPED };
static const char *const s_state_names[] = {"starting",     "running", "backoff",
                                            "disconnected", "failed",  "stopped"};

/*
 * The type prefixes a runner reads for its plugin: the plugin's own list, or
 * what it asked for in init (sc_host.subscribe). Never changed once published:
 * the ingest thread reads the current one to wake runners while init, run again
 * after a reload, may publish another. Each stays until the runner stops.
 */
typedef struct s_subs {
    struct s_subs *older;
    char **prefix; /* NULL-terminated */
    char *literal; /* the same as LIKE patterns in a text[] literal, for the journal read */
} s_subs_t;

typedef struct sc__runner {
    struct sc_ctx base; /* first: plugins reach the host through it */
    sc__daemon_t *d;
    sc__slot_t *slot;
    const struct sc_plugin *p;
    pthread_t thread;
    void *pipe_main; /* main's end; only the main thread touches it */
    uint64_t seq;    /* main's request counter */
    void *pipe;      /* the runner's end */
    int wake_fd;
    /* Set by the ingest thread when it writes wake_fd, cleared as a batch starts: a runner
     * already woken (waiting out plugins.pace, or yielding) is not woken again for each
     * batch the journal commits meanwhile. */
    atomic_bool wake_sent;
    PGconn *conn;
    void *publish;
    void *state;
    bool inited;
    json_t *config;
    _Atomic(s_subs_t *) subs;
    char **asked;    /* what the running init asked for (sc_host.subscribe), until it returns */
    json_t *pending; /* events emitted in the open transaction */
    json_t *schools; /* directory entries (schools, classes) read, kept while the directory
                        stays as it was (schools_epoch: see sc__directory_epoch) */
    uint64_t schools_epoch;
    atomic_int state_code;
    atomic_int_fast64_t cursor, handled, batches, retried, dead, ticks, yielded;
    atomic_int_fast64_t from_tail, from_db; /* events taken from memory, read from the journal */
    char last_error[512];
    pthread_mutex_t error_lock;
    /* runner-thread only */
    int64_t fail_event, attempts, backoff_ms, retry_at_ms, reconnect_ms, reconnect_at_ms;
    int64_t last_tick_ms;
    sc_time_t next_tick;
    bool more;  /* the last fetch filled a batch: go on without waiting */
    bool woken; /* new events of ours were journaled since the last fetch */
    /* After a batch that emptied the journal, the next waits until then, so that
     * events arriving one by one are handled together (plugins.pace). */
    int64_t pace_until_ms;
    /* While intake is busy, a batch waits until plugins.yield ms after the last one:
     * the journal takes the machine first, plugins catch up when it slackens. */
    int64_t last_batch_ms;
    bool holding;
    int64_t head_checked_ms; /* when this runner last read the head; 0: not since it connected */
    sc__tev_t **took;        /* the events a batch took from the journal's tail */
    size_t took_cap;
    uint64_t sync_seq;
    int64_t sync_target;
} sc__runner_t;

/*
 * Type prefixes as LIKE patterns, in a text[] literal. A prefix test of every
 * journal row a plugin reads: LIKE compares bytes, where starts_with counted the
 * characters of each type first (a tenth of a catching-up plugin's time).
 */
static char *s_subscribe_literal(const char *const *prefixes)
{
    json_t *a = json_array();
    for (const char *const *s = prefixes; s && *s; s++) {
        char pat[512];
        size_t n = 0;
        for (const char *c = *s; *c && n + 3 < sizeof pat; c++) {
            if (*c == '\\' || *c == '%' || *c == '_')
                pat[n++] = '\\';
            pat[n++] = *c;
        }
        pat[n++] = '%';
        json_array_append_new(a, json_stringn(pat, n));
    }
    char *text = sc__pg_text_array(a);
    json_decref(a);
    return text;
}

static bool s_strv_equal(char *const *a, char *const *b)
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return !a[i] && !b[i];
}

/*
 * Makes `prefix` (taken over) the runner's list, unless it is the list already.
 * Returns 0 or -ENOMEM (the list in force stays).
 */
static int s_subs_publish(sc__runner_t *r, char **prefix)
{
    s_subs_t *now = atomic_load(&r->subs), *subs = NULL;
    if (!prefix || (now && s_strv_equal(now->prefix, prefix))) {
        sc__strv_free(prefix);
        return prefix ? 0 : -ENOMEM;
    }
    if (!(subs = calloc(1, sizeof *subs)) ||
        !(subs->literal = s_subscribe_literal((const char *const *)prefix))) {
        free(subs);
        sc__strv_free(prefix);
        return -ENOMEM;
    }
    subs->prefix = prefix;
    subs->older = now;
    atomic_store(&r->subs, subs);
    return 0;
}

static void s_subs_free(sc__runner_t *r)
{
    for (s_subs_t *s = atomic_load(&r->subs), *older; s; s = older) {
        older = s->older;
        sc__strv_free(s->prefix);
        free(s->literal);
        free(s);
    }
}

/* ---- the host table ---- */

static sc__runner_t *s_runner(sc_ctx_t *ctx)
{
    return (sc__runner_t *)ctx;
}

static void s_set_error(sc__runner_t *r, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&r->error_lock);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    pthread_mutex_unlock(&r->error_lock);
}

static void s_host_vlog(sc_ctx_t *ctx, int level, const char *fmt, va_list ap)
{
    sc__runner_t *r = s_runner(ctx);
    if (level <= SC_LOG_ERR) {
        va_list copy;
        va_copy(copy, ap);
        s_set_error(r, fmt, copy);
        va_end(copy);
    }
    if (level <= sc__log_level)
        sc__vlog(level, r->p->name, fmt, ap);
}

static int s_host_log_enabled(sc_ctx_t *ctx, int level)
{
    (void)ctx;
    return level <= sc__log_level || level <= SC_LOG_ERR;
}

static sc_time_t s_host_now(sc_ctx_t *ctx)
{
    (void)ctx;
    return sc__clock_now();
}

static PGconn *s_host_db(sc_ctx_t *ctx)
{
    return s_runner(ctx)->conn;
}
static const json_t *s_host_config(sc_ctx_t *ctx)
{
    return s_runner(ctx)->config;
}

static int s_host_emit(sc_ctx_t *ctx, const sc_emit_t *e)
{
    sc__runner_t *r = s_runner(ctx);
    char detail[512] = "";
    if (!e || !e->type || !sc__plugin_declares(r->p, e->type)) {
        SC__LOG(SC_LOG_ERR, r->p->name, "emitted %s, a type it does not declare",
                e && e->type ? e->type : "(null)");
        return -EINVAL;
    }
    if (!json_is_object(e->data)) {
        SC__LOG(SC_LOG_ERR, r->p->name, "emitted %s without a data object", e->type);
        return -EINVAL;
    }
    /* The owner's rules hold for emitted events too. */
    const sc__type_t *t = sc__registry_type(r->d->reg, e->type);
    sc_event_t ev = {.type = e->type,
                     .school = e->school,
                     .district = e->district,
                     .source = r->p->name,
                     .source_id = e->id,
                     .actor = e->actor,
                     .occurred_at = e->occurred_at ? e->occurred_at : sc__clock_now(),
                     .received_at = sc__clock_now(),
                     .data = e->data};
    if (t && t->validate && t->validate(&ev, detail, sizeof detail) < 0) {
        SC__LOG(SC_LOG_ERR, r->p->name, "emitted an invalid %s: %s", e->type, detail);
        return -EINVAL;
    }
    char *data = json_dumps(e->data, JSON_COMPACT);
    json_t *rec = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:s}", "type", e->type,
                            "school", e->school, "district", e->district, "id", e->id, "actor",
                            e->actor, "occurred_at", (json_int_t)ev.occurred_at, "received_at",
                            (json_int_t)ev.received_at, "data", data ? data : "{}");
    free(data);
    if (!rec)
        return -ENOMEM;
    json_array_append_new(r->pending, rec);
    return 0;
}

static json_t *s_host_people(sc_ctx_t *ctx, const char *school, const char *district,
                             const char *role)
{
    return sc__directory_people(s_runner(ctx)->conn, school, district, role);
}

/* Most directory entries a runner keeps. */
#define S_SCHOOLS_MAX 65536

/*
 * The directory entries the runner read (schools, classes), emptied first when a change to
 * the directory may have been journaled since they were read (sc__directory_epoch). Plugins
 * ask for the same schools and classes batch after batch.
 */
static json_t *s_schools(sc__runner_t *r)
{
    uint64_t epoch = sc__directory_epoch();
    if (epoch == 0 || epoch != r->schools_epoch || json_object_size(r->schools) > S_SCHOOLS_MAX)
        json_object_clear(r->schools);
    r->schools_epoch = epoch;
    return r->schools;
}

/*
 * A school's entry, remembered while the directory stays as it was (s_schools):
 * plugins ask for the same few schools for every event of a batch.
 */
static json_t *s_host_school(sc_ctx_t *ctx, const char *school)
{
    sc__runner_t *r = s_runner(ctx);
    if (!school)
        return NULL;
    json_t *hit = json_object_get(s_schools(r), school);
    if (hit)
        return json_is_object(hit) ? json_deep_copy(hit) : NULL;
    json_t *found = sc__directory_school(r->conn, school, r->d->timezone);
    if (PQstatus(r->conn) == CONNECTION_OK && PQtransactionStatus(r->conn) != PQTRANS_INERROR)
        json_object_set_new(r->schools, school, found ? json_deep_copy(found) : json_null());
    return found;
}

static json_t *s_host_person(sc_ctx_t *ctx, const char *person)
{
    return sc__directory_person(s_runner(ctx)->conn, person);
}

static const char *s_host_tz(sc_ctx_t *ctx)
{
    return s_runner(ctx)->d->timezone;
}

/* A class, remembered like a school. */
static json_t *s_host_class(sc_ctx_t *ctx, const char *school, const char *klass)
{
    sc__runner_t *r = s_runner(ctx);
    char key[2 * SC_CODE_MAX + 8];
    if (!school || !klass)
        return NULL;
    snprintf(key, sizeof key, "class\x1f%s\x1f%s", school, klass);
    json_t *hit = json_object_get(s_schools(r), key);
    if (hit)
        return json_is_object(hit) ? json_deep_copy(hit) : NULL;
    json_t *found = sc__directory_class(r->conn, school, klass);
    if (PQstatus(r->conn) == CONNECTION_OK && PQtransactionStatus(r->conn) != PQTRANS_INERROR)
        json_object_set_new(r->schools, key, found ? json_deep_copy(found) : json_null());
    return found;
}

static json_t *s_host_district_schools(sc_ctx_t *ctx, const char *district)
{
    return sc__directory_district_schools(s_runner(ctx)->conn, district,
                                          s_runner(ctx)->d->timezone);
}

/* Kept until init returns (s_init): the list then in force is what the last init asked. */
static int s_host_subscribe(sc_ctx_t *ctx, const char *const *prefixes)
{
    sc__runner_t *r = s_runner(ctx);
    char **asked = sc__subscribe_narrow(r->p->subscribe, prefixes);
    if (!asked)
        return -ENOMEM;
    sc__strv_free(r->asked);
    r->asked = asked;
    if (sc__log_level >= SC_LOG_INFO) {
        char *list = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&list, &len);
        for (char *const *p = asked; f && *p; p++)
            fprintf(f, "%s%s", p == asked ? "" : " ", *p);
        if (f)
            fclose(f);
        sc__log(SC_LOG_INFO, r->p->name, "reads only %s", list && *list ? list : "(nothing)");
        free(list);
    }
    return 0;
}

static const struct sc_host s_host = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_host),
    .vlog = s_host_vlog,
    .log_enabled = s_host_log_enabled,
    .now = s_host_now,
    .db = s_host_db,
    .config = s_host_config,
    .emit = s_host_emit,
    .people_with_role = s_host_people,
    .school = s_host_school,
    .person = s_host_person,
    .default_timezone = s_host_tz,
    .school_class = s_host_class,
    .district_schools = s_host_district_schools,
    .subscribe = s_host_subscribe,
};

/* ---- inside the runner thread ---- */

/*
 * Runs the plugin's init, then puts in force what it asked to read (sc_host.subscribe), or
 * its own list when it asked nothing: an init run again after a reload may ask otherwise.
 */
static int s_init(sc__runner_t *r)
{
    int rc = r->p->init ? r->p->init(&r->base, &r->state) : 0;
    char **asked = r->asked;
    r->asked = NULL;
    if (rc < 0) {
        sc__strv_free(asked);
        return rc;
    }
    return s_subs_publish(r,
                          asked ? asked : sc__subscribe_narrow(r->p->subscribe, r->p->subscribe));
}

static void s_error(sc__runner_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_set_error(r, fmt, ap);
    va_end(ap);
}

/* Drops the connection after a failure that may have been the connection's. */
static void s_check_conn(sc__runner_t *r, int rc)
{
    if (r->conn && (rc == -EAGAIN || PQstatus(r->conn) != CONNECTION_OK)) {
        sc__log(SC_LOG_WARNING, r->p->name, "database connection lost; reconnecting");
        PQfinish(r->conn);
        r->conn = NULL;
        atomic_store(&r->state_code, S_DISCONNECTED);
    }
}

/* Journals the events emitted in the open transaction. */
static int s_flush_emits(sc__runner_t *r, sc__jentry_t **out, size_t *nout)
{
    size_t n = json_array_size(r->pending);
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return 0;
    sc__jentry_t *e = calloc(n, sizeof *e);
    if (!e)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *rec = json_array_get(r->pending, i);
        e[i] = (sc__jentry_t){
            .type = sc_json_str(rec, "type"),
            .school = sc_json_str(rec, "school"),
            .district = sc_json_str(rec, "district"),
            .source = r->p->name,
            .source_id = sc_json_str(rec, "id"),
            .actor = sc_json_str(rec, "actor"),
            .occurred_at = sc_json_int(rec, "occurred_at", 0),
            .received_at = sc_json_int(rec, "received_at", 0),
            .data = sc_json_str(rec, "data"),
        };
        e[i].data_len = strlen(e[i].data);
    }
    char err[1024];
    int rc = sc__journal_append(r->conn, e, n, err, sizeof err);
    if (rc < 0) {
        s_error(r, "%s", err);
        sc__log(SC_LOG_ERR, r->p->name, "%s", err);
        free(e);
        return rc;
    }
    *out = e;
    *nout = n;
    return 0;
}

/* After commit: publish what was emitted and wake the other runners. */
static void s_after_commit(sc__runner_t *r, sc__jentry_t *e, size_t n)
{
    int64_t head = 0;
    sc__tail_append(e, n);
    for (size_t i = 0; i < n; i++) {
        if (e[i].duplicate)
            continue;
        char *json = sc__journal_envelope(&e[i]);
        if (json)
            sc__publish_event(r->publish, e[i].type, json);
        if (e[i].event > head)
            head = e[i].event;
    }
    free(e);
    json_array_clear(r->pending);
    if (head) {
        sc__stats_head(head);
        sc__runners_wake(r->d);
    }
}

static int s_commit(sc__runner_t *r, int64_t cursor)
{
    sc__jentry_t *e = NULL;
    size_t n = 0;
    int rc = s_flush_emits(r, &e, &n);
    if (rc == 0 && cursor >= 0) {
        char pos[24];
        snprintf(pos, sizeof pos, "%lld", (long long)cursor);
        const char *p[2] = {r->p->name, pos};
        PGresult *res = sc_pq_exec(r->conn,
                                   "UPDATE core.cursors SET position = $2, updated_at = now()"
                                   " WHERE plugin = $1",
                                   2, p, &rc);
        PQclear(res);
    }
    if (rc == 0)
        rc = sc__db_exec(r->conn, "COMMIT");
    if (rc < 0) {
        sc__db_exec(r->conn, "ROLLBACK");
        free(e);
        json_array_clear(r->pending);
        s_check_conn(r, rc);
        return rc;
    }
    if (cursor >= 0)
        atomic_store(&r->cursor, cursor);
    s_after_commit(r, e, n);
    return 0;
}

static int s_begin(sc__runner_t *r, const char *sql)
{
    json_array_clear(r->pending);
    s_schools(r); /* after the events were read: a change journaled with them moved the epoch */
    int rc = sc__db_exec(r->conn, sql);
    if (rc < 0)
        s_check_conn(r, rc);
    return rc;
}

static void s_backoff(sc__runner_t *r)
{
    int64_t min = sc__cfg_int(r->d->cfg->core, "plugins", "backoff_min");
    int64_t max = sc__cfg_int(r->d->cfg->core, "plugins", "backoff_max");
    r->backoff_ms = sc__backoff_next(r->backoff_ms, min, max);
    r->retry_at_ms = sc__mono_ms() + r->backoff_ms;
    atomic_store(&r->state_code, S_BACKOFF);
}

/* Parks an event that kept failing, with the error, and moves the cursor past it. */
static void s_dead_letter(sc__runner_t *r, int64_t event, const char *error)
{
    char ev[24], att[24];
    snprintf(ev, sizeof ev, "%lld", (long long)event);
    snprintf(att, sizeof att, "%lld", (long long)r->attempts);
    const char *p[4] = {r->p->name, ev, att, error};
    int rc = s_begin(r, "BEGIN");
    PGresult *res = NULL;
    if (rc == 0)
        res = sc_pq_exec(r->conn,
                         "INSERT INTO core.dead_letters (plugin, event, attempts, error)"
                         " VALUES ($1, $2, $3, $4)",
                         4, p, &rc);
    PQclear(res);
    if (rc == 0 && s_commit(r, event) == 0) {
        atomic_fetch_add(&r->dead, 1);
        sc__log(SC_LOG_ERR, r->p->name, "event %lld dead-lettered after %lld attempts: %s",
                (long long)event, (long long)r->attempts, error);
        r->attempts = 0;
        r->fail_event = 0;
        r->backoff_ms = 0;
        r->more = true; /* what came after it is waiting */
        atomic_store(&r->state_code, S_RUNNING);
    } else if (rc < 0) {
        sc__db_exec(r->conn, "ROLLBACK");
        s_check_conn(r, rc);
    }
}

static void s_failed(sc__runner_t *r, int64_t event, int rc)
{
    char error[600];
    pthread_mutex_lock(&r->error_lock);
    snprintf(error, sizeof error, "handle returned %d (%s)%s%s", rc, strerror(-rc),
             r->last_error[0] ? ": " : "", r->last_error);
    pthread_mutex_unlock(&r->error_lock);
    if (r->fail_event != event) {
        r->fail_event = event;
        r->attempts = 0;
        r->backoff_ms = 0;
    }
    r->attempts++;
    atomic_fetch_add(&r->retried, 1);
    int64_t max = sc__cfg_int(r->d->cfg->core, "plugins", "attempts");
    if (rc != -EAGAIN && r->attempts >= max) {
        s_dead_letter(r, event, error);
        return;
    }
    if (r->attempts == 1 || r->attempts % 10 == 0)
        sc__log(SC_LOG_WARNING, r->p->name, "event %lld failed (attempt %lld): %s",
                (long long)event, (long long)r->attempts, error);
    s_backoff(r);
}

/*
 * The journal's head as this daemon knows it moves with every commit of its own; once a
 * second (and after each connection of a runner) it is also read from the database, for
 * what the daemon did not journal itself. One runner reads it for all: under load the
 * read walks past the rows of the batch in flight, a millisecond or more each time.
 */
static atomic_int_fast64_t s_head_checked_ms;

static void s_refresh_head(sc__runner_t *r)
{
    int64_t now_ms = sc__mono_ms();
    int_fast64_t last = atomic_load(&s_head_checked_ms);
    if (r->head_checked_ms && (now_ms - last < 1000 ||
                               !atomic_compare_exchange_strong(&s_head_checked_ms, &last, now_ms)))
        return;
    int rc;
    PGresult *res =
        sc_pq_exec(r->conn, "SELECT coalesce(max(id), 0) FROM core.events", 0, NULL, &rc);
    if (res) {
        sc__stats_head(strtoll(PQgetvalue(res, 0, 0), NULL, 10));
        r->head_checked_ms = now_ms;
    }
    PQclear(res);
}

/* The batch is over: keep = the plugin writes what it deferred, else drops it. */
static int s_end_batch(sc__runner_t *r, bool keep)
{
    if (!SC_PLUGIN_HAS(r->p, end_batch) || !r->p->end_batch)
        return 0;
    return r->p->end_batch(&r->base, r->state, keep);
}

/* The events of one batch: taken from the journal's tail, or read from the database. */
typedef struct s_read {
    PGresult *res;
    sc__tev_t **tev;
    int rows;
} s_read_t;

static void s_read_event(const s_read_t *b, int i, sc_event_t *ev, const char **data, size_t *len)
{
    if (b->tev) {
        *ev = *sc__tev_event(b->tev[i], data, len);
        return;
    }
    const PGresult *res = b->res;
    *ev = (sc_event_t){
        .id = strtoll(PQgetvalue(res, i, 0), NULL, 10),
        .type = PQgetvalue(res, i, 1),
        .school = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
        .district = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3),
        .source = PQgetvalue(res, i, 4),
        .source_id = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5),
        .occurred_at = sc_pq_time(res, i, 6, 0),
        .received_at = sc_pq_time(res, i, 7, 0),
        .actor = PQgetisnull(res, i, 8) ? NULL : PQgetvalue(res, i, 8),
    };
    *data = PQgetvalue(res, i, 9);
    *len = (size_t)PQgetlength(res, i, 9);
}

static void s_read_release(s_read_t *b)
{
    PQclear(b->res);
    b->res = NULL;
    for (int i = 0; b->tev && i < b->rows; i++)
        sc__tev_release(b->tev[i]);
    b->tev = NULL;
    b->rows = 0;
}

/*
 * The next events of the plugin's types after `cursor`, at most `max`: from the journal's
 * tail when it holds the cursor's next id, otherwise from the database, up to the tail's
 * start. *end: the last id the read covered. Outside any transaction: the rows are
 * committed and never change. Returns -1 when the read failed.
 */
static int s_read(sc__runner_t *r, int64_t cursor, int64_t head, int max, s_read_t *b, int64_t *end)
{
    int64_t lo = INT64_MAX;
    if ((size_t)max > r->took_cap) {
        sc__tev_t **t = realloc(r->took, (size_t)max * sizeof *t);
        if (t) {
            r->took = t;
            r->took_cap = (size_t)max;
        }
    }
    if ((size_t)max <= r->took_cap) {
        int n = sc__tail_take(cursor, (const char *const *)atomic_load(&r->subs)->prefix,
                              (size_t)max, S_WINDOW, r->took, end, &lo);
        if (n >= 0) {
            b->tev = r->took;
            b->rows = n;
            atomic_fetch_add(&r->from_tail, n);
            return 0;
        }
    }
    /* Read no further than the head: every id up to it is committed (ids follow commit
     * order), so the scan never stops at rows a batch still has in flight. */
    *end = cursor + S_WINDOW < head ? cursor + S_WINDOW : head;
    if (cursor < lo - 1 && *end >= lo) /* behind the tail: the database up to its start */
        *end = lo - 1;
    if (*end <= cursor)
        return 0;
    char cur[24], lim[16], upto[24];
    snprintf(cur, sizeof cur, "%lld", (long long)cursor);
    snprintf(lim, sizeof lim, "%d", max);
    snprintf(upto, sizeof upto, "%lld", (long long)*end);
    const char *p[4] = {cur, atomic_load(&r->subs)->literal, lim, upto};
    PGresult *res = PQexecPrepared(r->conn, "sc_fetch", 4, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = sc_pq_error(r->conn, res);
        PQclear(res);
        sc__log(SC_LOG_ERR, r->p->name, "could not read the journal: %s", PQerrorMessage(r->conn));
        s_check_conn(r, rc);
        return -1;
    }
    b->res = res;
    b->rows = PQntuples(res);
    atomic_fetch_add(&r->from_db, b->rows);
    return 0;
}

/*
 * Handles up to `max` events after the cursor in one transaction. Optimistic:
 * no savepoint per event. When the k-th event fails, the whole transaction is
 * rolled back and the k events before it are handled again on their own (they
 * succeeded once, and nothing of them was kept), so the failing event is next.
 * When the plugin's end_batch fails, the batch is halved until the event at
 * fault stands alone.
 */
static void s_process(sc__runner_t *r, int max)
{
    /* Before the head is read: an event committed after it wakes the runner again. */
    atomic_store(&r->wake_sent, false);
    int64_t cursor = atomic_load(&r->cursor);
    s_refresh_head(r);
    int64_t head = atomic_load(&sc__stats.head);
    int64_t window_end = cursor;
    s_read_t b = {0};
    int rc = 0;
    r->more = false;
    if (s_read(r, cursor, head, max, &b, &window_end) < 0)
        return;
    if (window_end <= cursor && b.rows == 0)
        return; /* nothing journaled after the cursor */
    /* A transaction only when there is something to handle. */
    if (b.rows > 0 && s_begin(r, "BEGIN") < 0) {
        s_read_release(&b);
        return;
    }
    int rows = b.rows;
    int64_t last = cursor;
    int handled = 0;
    bool any = rows > 0;
    for (int i = 0; any && i < rows; i++) {
        sc_event_t ev;
        const char *text;
        size_t len;
        s_read_event(&b, i, &ev, &text, &len);
        json_t *data = json_loadb(text, len, 0, NULL);
        ev.data = data;
        pthread_mutex_lock(&r->error_lock);
        r->last_error[0] = '\0';
        pthread_mutex_unlock(&r->error_lock);
        rc = data ? r->p->handle(&r->base, r->state, &ev) : -EINVAL;
        json_decref(data);
        if (rc < 0) {
            s_read_release(&b);
            sc__db_exec(r->conn, "ROLLBACK");
            json_array_clear(r->pending);
            s_end_batch(r, false);
            if (r->conn && PQstatus(r->conn) != CONNECTION_OK) {
                s_check_conn(r, -EAGAIN);
            } else if (handled > 0) {
                s_process(r, handled); /* the events before it, then it again */
                r->more = true;
            } else {
                s_failed(r, ev.id, rc);
            }
            return;
        }
        handled++;
        last = ev.id;
    }
    s_read_release(&b);
    /* A full batch ends at its last event; otherwise the window was read to its end. */
    int64_t next_cursor = (any && rows == max) ? last : window_end;
    if (next_cursor < cursor)
        next_cursor = cursor;
    if (handled == 0) {
        /* Nothing of ours in there: move on in memory; the next commit records it. Were it
         * lost in a crash, re-reading the range would find nothing of ours again. */
        atomic_store(&r->cursor, next_cursor);
    } else if ((rc = s_end_batch(r, true)) < 0) {
        /* The deferred writes of the batch failed: which event's, the halves will tell. */
        sc__db_exec(r->conn, "ROLLBACK");
        json_array_clear(r->pending);
        if (r->conn && PQstatus(r->conn) != CONNECTION_OK) {
            s_check_conn(r, -EAGAIN);
        } else if (handled > 1) {
            s_process(r, handled / 2);
            r->more = true;
        } else {
            s_failed(r, last, rc);
        }
        return;
    } else if (s_commit(r, next_cursor) < 0) {
        sc__log(SC_LOG_WARNING, r->p->name, "could not commit a batch: %s",
                r->conn ? PQerrorMessage(r->conn) : "connection lost");
        s_backoff(r);
        return;
    }
    atomic_fetch_add(&r->handled, handled);
    if (handled > 0)
        atomic_fetch_add(&r->batches, 1);
    r->more = (any && rows == max) || head > window_end;
    if (handled > 0 && !r->more && !sc__clock_manual())
        r->pace_until_ms = sc__mono_ms() + sc__cfg_int(r->d->cfg->core, "plugins", "pace");
    if (handled > 0 || next_cursor > cursor) {
        if (r->fail_event && r->fail_event <= last) { /* it went through in the end */
            r->fail_event = 0;
            r->attempts = 0;
        }
        r->backoff_ms = 0;
        atomic_store(&r->state_code, S_RUNNING);
    }
}

/* Runs tick(now) in a transaction; returns its result and the next instant. */
static int s_tick(sc__runner_t *r, sc_time_t now, sc_time_t *next)
{
    *next = SC_TIME_NEVER;
    r->last_tick_ms = sc__mono_ms();
    if (!r->p->tick)
        return 0;
    if (!r->conn)
        return -EAGAIN;
    int rc = s_begin(r, "BEGIN");
    if (rc < 0)
        return rc;
    rc = r->p->tick(&r->base, r->state, now, next);
    if (rc < 0) {
        sc__db_exec(r->conn, "ROLLBACK");
        json_array_clear(r->pending);
        sc__log(SC_LOG_WARNING, r->p->name, "tick at %lld failed: %d (%s)", (long long)now, rc,
                strerror(-rc));
        s_check_conn(r, rc);
        return rc;
    }
    atomic_fetch_add(&r->ticks, 1);
    r->next_tick = *next;
    return s_commit(r, -1);
}

static json_t *s_query(sc__runner_t *r, const char *text)
{
    json_error_t jerr;
    json_t *req = json_loads(text, 0, &jerr);
    json_t *reply = NULL;
    int rc = -EINVAL;
    if (!req)
        return json_pack("{s:b, s:s}", "ok", 0, "error", "request: not JSON");
    if (!r->p->query) {
        json_decref(req);
        return json_pack("{s:b, s:s}", "ok", 0, "error", "plugin: answers no queries");
    }
    if (!r->conn) {
        json_decref(req);
        return json_pack("{s:b, s:s}", "ok", 0, "error", "database: not reachable");
    }
    if (s_begin(r, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") == 0) {
        rc = r->p->query(&r->base, r->state, req, &reply);
        sc__db_exec(r->conn, rc == 0 ? "COMMIT" : "ROLLBACK");
    }
    json_decref(req);
    if (!json_is_object(reply)) {
        json_decref(reply);
        reply = json_object();
    }
    if (rc == 0) {
        json_object_set_new(reply, "ok", json_true());
    } else {
        json_object_set_new(reply, "ok", json_false());
        if (!json_object_get(reply, "error"))
            json_object_set_new(reply, "error", json_string(strerror(-rc)));
    }
    return reply;
}

static int s_connect(sc__runner_t *r)
{
    char err[512];
    if (r->conn)
        return 0;
    if (sc__mono_ms() < r->reconnect_at_ms)
        return -EAGAIN;
    r->conn = sc__db_connect(r->d->conninfo, r->p->name, err, sizeof err);
    if (!r->conn) {
        int64_t max = sc__cfg_int(r->d->cfg->core, "database", "reconnect_max") * 1000;
        r->reconnect_ms = sc__backoff_next(r->reconnect_ms, 100, max > 100 ? max : 100);
        r->reconnect_at_ms = sc__mono_ms() + r->reconnect_ms;
        SC__LOG(SC_LOG_WARNING, r->p->name, "%s", err);
        return -EAGAIN;
    }
    r->reconnect_ms = 0;
    /*
     * The journal read (core.journal_read, 005 and 006_journal_read_plan_kept.sql): the primary key
     * in order from the cursor, bounded by the head the runner knows is committed and by an id
     * window, so it stays a short range scan however far behind the plugin is and however rare its
     * types.
     */
    r->head_checked_ms = 0;
    PGresult *prep = PQprepare(r->conn, "sc_fetch",
                               "SELECT * FROM core.journal_read($1::bigint, $2::text[], $3::int,"
                               " $4::bigint)",
                               4, NULL);
    bool prepared = PQresultStatus(prep) == PGRES_COMMAND_OK && sc__journal_prepare(r->conn) == 0;
    PQclear(prep);
    /*
     * Nobody waits for a plugin's commit, so it need not wait for the disk: its writes, cursor
     * and emitted events still commit or vanish together, and any later synchronous commit
     * (every ingest batch) makes them durable. A database crash can only undo a plugin's last
     * moments, which it then does again from its cursor.
     */
    if (!prepared || sc__db_exec(r->conn, "SET synchronous_commit = off") < 0) {
        SC__LOG(SC_LOG_WARNING, r->p->name, "could not set up the session: %s",
                PQerrorMessage(r->conn));
        PQfinish(r->conn);
        r->conn = NULL;
        return -EAGAIN;
    }
    /* The cursor is the database's, not ours: resume exactly where the last commit left it. */
    const char *p[1] = {r->p->name};
    int rc;
    PGresult *res = sc_pq_exec(r->conn,
                               "INSERT INTO core.cursors (plugin) VALUES ($1)"
                               " ON CONFLICT (plugin) DO UPDATE SET plugin = EXCLUDED.plugin"
                               " RETURNING position",
                               1, p, &rc);
    if (!res) {
        PQfinish(r->conn);
        r->conn = NULL;
        return rc;
    }
    atomic_store(&r->cursor, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
    /* A new connection has none of the plugin's prepared statements: start it afresh. */
    if (r->inited && r->p->fini) {
        r->p->fini(&r->base, r->state);
        r->state = NULL;
        r->inited = false;
    }
    if ((rc = s_init(r)) < 0) {
        char e[600];
        pthread_mutex_lock(&r->error_lock);
        snprintf(e, sizeof e, "init failed: %d (%s)%s%s", rc, strerror(-rc),
                 r->last_error[0] ? ": " : "", r->last_error);
        memcpy(r->last_error, e, sizeof r->last_error - 1);
        r->last_error[sizeof r->last_error - 1] = '\0';
        pthread_mutex_unlock(&r->error_lock);
        if (r->p->fini)
            r->p->fini(&r->base, r->state);
        r->state = NULL;
        return rc == -EAGAIN ? -EAGAIN : -EINVAL;
    }
    r->inited = true;
    atomic_store(&r->state_code, S_RUNNING);
    return 0;
}

static void s_reply(sc__runner_t *r, const char *status, uint64_t seq, const void *payload,
                    size_t len)
{
    zmq_send(r->pipe, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(r->pipe, &seq, sizeof seq, ZMQ_SNDMORE);
    zmq_send(r->pipe, payload, len, 0);
}

/* One command from the main thread: [cmd][seq][arg]. Returns false on TERM. */
static bool s_command(sc__runner_t *r)
{
    char cmd[16] = "";
    uint64_t seq = 0;
    zmq_msg_t arg;
    int n = zmq_recv(r->pipe, cmd, sizeof cmd - 1, 0);
    if (n < 0)
        return true;
    cmd[n] = '\0';
    zmq_recv(r->pipe, &seq, sizeof seq, 0);
    zmq_msg_init(&arg);
    zmq_msg_recv(&arg, r->pipe, 0);
    const char *a = zmq_msg_data(&arg);
    size_t alen = zmq_msg_size(&arg);
    bool go_on = true;

    if (strcmp(cmd, "TERM") == 0) {
        go_on = false;
    } else if (strcmp(cmd, "TICK") == 0) {
        sc_time_t t = 0, next = SC_TIME_NEVER;
        memcpy(&t, a, alen < sizeof t ? alen : sizeof t);
        /* Events already journaled come first: they may set deadlines this tick must see. */
        for (int i = 0; i < 1000 && r->conn; i++) {
            s_process(r, (int)sc__cfg_int(r->d->cfg->core, "plugins", "batch"));
            if (!r->more)
                break;
        }
        int rc = s_tick(r, t, &next);
        s_reply(r, rc == 0 ? "OK" : "ERR", seq, &next, sizeof next);
    } else if (strcmp(cmd, "SYNC") == 0) {
        memcpy(&r->sync_target, a, alen < sizeof r->sync_target ? alen : sizeof r->sync_target);
        r->sync_seq = seq;
    } else if (strcmp(cmd, "QUERY") == 0) {
        char *text = strndup(a, alen);
        json_t *reply = s_query(r, text);
        free(text);
        char *out = json_dumps(reply, JSON_COMPACT);
        s_reply(r, "OK", seq, out ? out : "{}", out ? strlen(out) : 2);
        free(out);
        json_decref(reply);
    } else if (strcmp(cmd, "RELOAD") == 0) {
        json_t *cfg = json_loadb(a, alen, 0, NULL);
        if (cfg) {
            json_decref(r->config);
            r->config = cfg;
            /* init reads the new section; state lives in the database, so nothing is lost. */
            if (r->inited && r->p->fini)
                r->p->fini(&r->base, r->state);
            r->inited = false;
            r->state = NULL;
            int rc = s_init(r);
            r->inited = rc == 0;
            if (rc < 0)
                atomic_store(&r->state_code, S_FAILED);
        }
        s_reply(r, r->inited ? "OK" : "ERR", seq, "", 0);
    }
    zmq_msg_close(&arg);
    return go_on;
}

/* Until `at`, 0 once it is past (never -1, which would mean "until woken"). */
static long s_until(int64_t at, int64_t now_ms)
{
    return at > now_ms ? (long)(at - now_ms) : 0;
}

long sc__runner_wait_ms(const sc__runner_wait_t *w, int64_t now_ms)
{
    if (!w->connected)
        return s_until(w->reconnect_at_ms, now_ms);
    if (w->retry_at_ms > now_ms)
        return s_until(w->retry_at_ms, now_ms);
    if (w->more && !w->holding)
        return 0;
    /* Woken: once its pace is out, at once when it already is. A wake-up read while the pace
     * ran, whose pace then ran out before the loop came round (a tick, a query, or the poll
     * coming back a hair early), had left the runner asleep until its next tick: a second of
     * events behind with the CPU idle. */
    if (w->woken && !w->holding)
        return s_until(w->pace_until_ms, now_ms);
    return -1;
}

static void *s_main(void *arg)
{
    sc__runner_t *r = arg;
    char tname[16]; /* the kernel keeps 15 bytes: "top -H" shows which plugin is busy */
    snprintf(tname, sizeof tname, "p:%s", r->p->name);
    pthread_setname_np(pthread_self(), tname);
    bool manual = sc__clock_manual();
    int64_t interval_ms = sc__cfg_int(r->d->cfg->core, "clock", "tick_interval") * 1000;
    if (interval_ms <= 0)
        interval_ms = 1000;
    int64_t yield_ms = sc__cfg_int(r->d->cfg->core, "plugins", "yield");
    r->pipe = zmq_socket(r->d->zctx, ZMQ_PAIR);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "inproc://sc-runner-%s", r->p->name);
    zmq_connect(r->pipe, endpoint);
    r->publish = sc__publish_socket(r->d);

    /* Start-up: the first connection and init decide whether the plugin runs at all. */
    int rc = s_connect(r);
    for (int i = 0; rc == -EAGAIN && i < 50; i++) {
        usleep(100000);
        r->reconnect_at_ms = 0;
        rc = s_connect(r);
    }
    s_reply(r, rc == 0 ? "READY" : "FAIL", 0, r->last_error, strlen(r->last_error));
    if (rc < 0) {
        atomic_store(&r->state_code, S_FAILED);
        /* Wait for TERM so main's shutdown is the same for every runner. */
        while (s_command(r))
            ;
        goto out;
    }

    for (;;) {
        int64_t now_ms = sc__mono_ms();
        long timeout =
            sc__runner_wait_ms(&(sc__runner_wait_t){.connected = r->conn != NULL,
                                                    .more = r->more,
                                                    .woken = r->woken,
                                                    .holding = r->holding,
                                                    .reconnect_at_ms = r->reconnect_at_ms,
                                                    .retry_at_ms = r->retry_at_ms,
                                                    .pace_until_ms = r->pace_until_ms},
                               now_ms);
        if (!manual && r->conn) {
            int64_t due = r->last_tick_ms + interval_ms;
            sc_time_t wall = sc__clock_now();
            if (r->next_tick != SC_TIME_NEVER && r->next_tick > wall) {
                int64_t soon = now_ms + (r->next_tick - wall) / 1000;
                if (soon < due)
                    due = soon;
            }
            long t = (long)(due - now_ms);
            if (t < 0)
                t = 0;
            if (timeout < 0 || t < timeout)
                timeout = t;
        }
        if (r->holding && (timeout < 0 || timeout > 20))
            timeout = 20; /* look again soon: intake may have slackened */
        zmq_pollitem_t pi[2] = {{r->pipe, 0, ZMQ_POLLIN, 0}, {NULL, r->wake_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll(pi, 2, timeout) < 0 && zmq_errno() == ETERM)
            break;
        if (pi[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t got = read(r->wake_fd, &v, sizeof v);
            (void)got;
            r->woken = true;
        }
        if ((pi[0].revents & ZMQ_POLLIN) && !s_command(r))
            break;
        if (!r->conn && s_connect(r) < 0)
            continue;
        now_ms = sc__mono_ms();
        bool due = now_ms >= r->retry_at_ms && (r->more || now_ms >= r->pace_until_ms);
        r->holding = due && !manual && (r->more || r->woken) && sc__intake_busy() &&
                     now_ms < r->last_batch_ms + yield_ms;
        if (r->holding) {
            atomic_fetch_add(&r->yielded, 1);
        } else if (due) {
            r->woken = false;
            s_process(r, (int)sc__cfg_int(r->d->cfg->core, "plugins", "batch"));
            r->last_batch_ms = sc__mono_ms();
        }
        if (!manual && r->conn && sc__mono_ms() >= r->last_tick_ms + interval_ms) {
            sc_time_t next;
            s_tick(r, sc__clock_now(), &next);
        } else if (!manual && r->conn && r->next_tick != SC_TIME_NEVER &&
                   sc__clock_now() >= r->next_tick) {
            sc_time_t next;
            s_tick(r, sc__clock_now(), &next);
        }
        if (r->sync_seq && (atomic_load(&r->cursor) >= r->sync_target)) {
            int64_t c = atomic_load(&r->cursor);
            s_reply(r, "OK", r->sync_seq, &c, sizeof c);
            r->sync_seq = 0;
        }
    }
out:
    if (r->inited && r->p->fini)
        r->p->fini(&r->base, r->state);
    r->inited = false;
    PQfinish(r->conn);
    r->conn = NULL;
    zmq_close(r->publish);
    zmq_close(r->pipe);
    atomic_store(&r->state_code, S_STOPPED);
    return NULL;
}

/* ---- the main thread's side ---- */

/* Sends [cmd][seq][arg] and waits up to timeout_ms for the matching reply. */
static int s_request(sc__runner_t *r, const char *cmd, const void *arg, size_t len,
                     int64_t timeout_ms, zmq_msg_t *reply, char *status, size_t slen)
{
    uint64_t seq = ++r->seq;
    zmq_send(r->pipe_main, cmd, strlen(cmd), ZMQ_SNDMORE);
    zmq_send(r->pipe_main, &seq, sizeof seq, ZMQ_SNDMORE);
    zmq_send(r->pipe_main, arg, len, 0);
    int64_t deadline = sc__mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - sc__mono_ms();
        if (left < 0)
            return -ETIMEDOUT;
        zmq_pollitem_t pi = {r->pipe_main, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, (long)left) <= 0)
            continue;
        char st[16] = "";
        uint64_t got = 0;
        int n = zmq_recv(r->pipe_main, st, sizeof st - 1, 0);
        zmq_recv(r->pipe_main, &got, sizeof got, 0);
        zmq_msg_init(reply);
        zmq_msg_recv(reply, r->pipe_main, 0);
        if (got != seq) { /* a late answer to a request that timed out */
            zmq_msg_close(reply);
            continue;
        }
        snprintf(status, slen, "%.*s", n < 0 ? 0 : n, st);
        return 0;
    }
}

void sc__runners_wake_for(sc__daemon_t *d, const sc__jentry_t *e, size_t n)
{
    uint64_t one = 1;
    for (size_t k = 0; k < d->nrunners; k++) {
        sc__runner_t *r = d->runners[k];
        bool hit = false;
        char *const *prefix = atomic_load(&r->subs)->prefix;
        for (size_t i = 0; i < n && !hit; i++)
            for (char *const *p = prefix; *p && !hit; p++)
                hit = !e[i].duplicate && strncmp(e[i].type, *p, strlen(*p)) == 0;
        if (hit && !atomic_exchange(&r->wake_sent, true)) {
            ssize_t w = write(r->wake_fd, &one, sizeof one);
            (void)w;
        }
    }
}

void sc__runners_wake(sc__daemon_t *d)
{
    uint64_t one = 1;
    for (size_t i = 0; i < d->nrunners; i++) {
        ssize_t w = write(d->runners[i]->wake_fd, &one, sizeof one);
        (void)w;
    }
}

int sc__runners_start(sc__daemon_t *d, char *err, size_t errlen)
{
    d->runners = calloc(d->reg->nslots + 1, sizeof *d->runners);
    for (size_t i = 0; i < d->reg->nslots; i++) {
        sc__slot_t *slot = &d->reg->slots[i];
        sc__runner_t *r = calloc(1, sizeof *r);
        /* The plugin's own list until its init asks for less. */
        if (!r ||
            s_subs_publish(r, sc__subscribe_narrow(slot->p->subscribe, slot->p->subscribe)) < 0) {
            free(r);
            snprintf(err, errlen, "plugin %s: out of memory", slot->p->name);
            return -ENOMEM;
        }
        r->base.host = &s_host;
        r->d = d;
        r->slot = slot;
        r->p = slot->p;
        r->config = json_deep_copy(slot->config);
        r->pending = json_array();
        r->schools = json_object();
        r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        r->next_tick = SC_TIME_NEVER;
        pthread_mutex_init(&r->error_lock, NULL);
        r->pipe_main = zmq_socket(d->zctx, ZMQ_PAIR);
        char endpoint[128];
        snprintf(endpoint, sizeof endpoint, "inproc://sc-runner-%s", r->p->name);
        zmq_bind(r->pipe_main, endpoint);
        d->runners[d->nrunners++] = r;
        pthread_create(&r->thread, NULL, s_main, r);
    }
    int rc = 0;
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        char st[16] = "";
        uint64_t seq;
        zmq_msg_t m;
        int n = zmq_recv(r->pipe_main, st, sizeof st - 1, 0);
        st[n < 0 ? 0 : n] = '\0';
        zmq_recv(r->pipe_main, &seq, sizeof seq, 0);
        zmq_msg_init(&m);
        zmq_msg_recv(&m, r->pipe_main, 0);
        if (strcmp(st, "READY") != 0) {
            if (r->slot->optional) {
                sc__log(SC_LOG_WARNING, r->p->name, "%.*s; going on without it (optional)",
                        (int)zmq_msg_size(&m), (char *)zmq_msg_data(&m));
            } else if (rc == 0) {
                snprintf(err, errlen, "plugin %s could not start: %.*s", r->p->name,
                         (int)zmq_msg_size(&m), (char *)zmq_msg_data(&m));
                rc = -EINVAL;
            }
        } else {
            sc__log(SC_LOG_INFO, r->p->name, "started (version %s, cursor %lld)",
                    r->p->version ? r->p->version : "?", (long long)atomic_load(&r->cursor));
        }
        zmq_msg_close(&m);
    }
    return rc;
}

void sc__runners_stop(sc__daemon_t *d)
{
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        uint64_t seq = ++r->seq;
        zmq_send(r->pipe_main, "TERM", 4, ZMQ_SNDMORE);
        zmq_send(r->pipe_main, &seq, sizeof seq, ZMQ_SNDMORE);
        zmq_send(r->pipe_main, "", 0, 0);
    }
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        pthread_join(r->thread, NULL);
        zmq_close(r->pipe_main);
        close(r->wake_fd);
        json_decref(r->config);
        json_decref(r->pending);
        json_decref(r->schools);
        s_subs_free(r);
        sc__strv_free(r->asked); /* asked for outside init: never in force */
        free(r->took);
        pthread_mutex_destroy(&r->error_lock);
        free(r);
    }
    free(d->runners);
    d->runners = NULL;
    d->nrunners = 0;
}

/*
 * How far the plugin is behind: the events journaled after its cursor, less those the journal's
 * tail shows come before its next own event. It is not behind for those: given nothing, a
 * runner is not woken, and moves its cursor over them at its next tick or batch, for nothing.
 * Numbers the tail cannot place (drawn elsewhere, or before it starts) count, and the look goes
 * on after them. Bounded like a runner's own takes (at most eight windows), which let intake
 * append as they go.
 */
static int64_t s_lag(const sc__runner_t *r, int64_t cursor, int64_t head)
{
    const char *const *prefix = (const char *const *)atomic_load(&r->subs)->prefix;
    int64_t at = cursor, counted = 0;
    for (int k = 0; k < 8 && at < head; k++) {
        sc__tev_t *t;
        const char *data;
        size_t len;
        int64_t upto, lo;
        int n = sc__tail_take(at, prefix, 1, S_WINDOW, &t, &upto, &lo);
        if (n > 0) { /* its next own event: behind from there on */
            at = sc__tev_event(t, &data, &len)->id - 1;
            sc__tev_release(t);
            break;
        }
        if (n == 0) { /* none of its own up to upto */
            at = upto;
        } else if (lo != INT64_MAX && lo - 1 > at && lo - 1 < head) { /* unplaced up to lo */
            counted += lo - 1 - at;
            at = lo - 1;
        } else {
            break;
        }
    }
    return counted + (head > at ? head - at : 0);
}

json_t *sc__runners_list(sc__daemon_t *d)
{
    json_t *list = json_array();
    int64_t head = atomic_load(&sc__stats.head);
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        int64_t cursor = atomic_load(&r->cursor);
        json_t *subs = json_array();
        for (char *const *s = atomic_load(&r->subs)->prefix; *s; s++)
            json_array_append_new(subs, json_string(*s));
        pthread_mutex_lock(&r->error_lock);
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}",
            "name", r->p->name, "version", r->p->version ? r->p->version : "", "description",
            r->p->description ? r->p->description : "", "state",
            s_state_names[atomic_load(&r->state_code)], "subscribe", subs, "cursor",
            (json_int_t)cursor, "lag", (json_int_t)s_lag(r, cursor, head), "handled",
            (json_int_t)atomic_load(&r->handled), "batches", (json_int_t)atomic_load(&r->batches),
            "retried", (json_int_t)atomic_load(&r->retried), "dead_letters",
            (json_int_t)atomic_load(&r->dead), "yielded", (json_int_t)atomic_load(&r->yielded),
            "from_tail", (json_int_t)atomic_load(&r->from_tail), "from_journal",
            (json_int_t)atomic_load(&r->from_db), "ticks", (json_int_t)atomic_load(&r->ticks),
            "last_error", r->last_error[0] ? r->last_error : NULL);
        pthread_mutex_unlock(&r->error_lock);
        json_array_append_new(list, o);
    }
    return list;
}

static sc__runner_t *s_find(sc__daemon_t *d, const char *name)
{
    for (size_t i = 0; name && i < d->nrunners; i++)
        if (strcmp(d->runners[i]->p->name, name) == 0)
            return d->runners[i];
    return NULL;
}

json_t *sc__runner_query(sc__daemon_t *d, const char *plugin, const json_t *req)
{
    sc__runner_t *r = s_find(d, plugin);
    if (!r)
        return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "unknown_plugin", "detail",
                         "plugin: no plugin of that name is running");
    char *text = json_dumps(req, JSON_COMPACT);
    zmq_msg_t reply;
    char st[16];
    int rc = s_request(r, "QUERY", text, strlen(text), 60000, &reply, st, sizeof st);
    free(text);
    if (rc < 0)
        return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "timeout", "detail",
                         "plugin: did not answer within 60 s");
    json_t *out = json_loadb(zmq_msg_data(&reply), zmq_msg_size(&reply), 0, NULL);
    zmq_msg_close(&reply);
    return out ? out : json_pack("{s:b, s:s}", "ok", 0, "error", "internal");
}

/* Waits until every runner has handled the journal up to its head, however it grows. */
static int s_sync_all(sc__daemon_t *d, int64_t deadline_ms)
{
    for (int round = 0; round < 1000; round++) {
        int64_t head = atomic_load(&sc__stats.head);
        for (size_t i = 0; i < d->nrunners; i++) {
            sc__runner_t *r = d->runners[i];
            if (atomic_load(&r->state_code) == S_FAILED)
                continue;
            zmq_msg_t reply;
            char st[16];
            if (s_request(r, "SYNC", &head, sizeof head, deadline_ms - sc__mono_ms(), &reply, st,
                          sizeof st) < 0) {
                sc__log(SC_LOG_WARNING, r->p->name, "did not catch up with the journal in time");
                return -ETIMEDOUT;
            }
            zmq_msg_close(&reply);
        }
        if (atomic_load(&sc__stats.head) == head)
            return 0;
    }
    return 0;
}

/*
 * Ticks every runner at t; *next gets the earliest instant after t that any of
 * them asked for, *again whether one still has work due at t (it did a bounded
 * share of it).
 */
static int s_tick_all(sc__daemon_t *d, sc_time_t t, sc_time_t *next, bool *again,
                      int64_t deadline_ms)
{
    *next = SC_TIME_NEVER;
    *again = false;
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        if (atomic_load(&r->state_code) == S_FAILED)
            continue;
        zmq_msg_t reply;
        char st[16];
        if (s_request(r, "TICK", &t, sizeof t, deadline_ms - sc__mono_ms(), &reply, st, sizeof st) <
            0)
            return -ETIMEDOUT;
        sc_time_t n = SC_TIME_NEVER;
        if (zmq_msg_size(&reply) == sizeof n)
            memcpy(&n, zmq_msg_data(&reply), sizeof n);
        zmq_msg_close(&reply);
        if (n > t && n < *next)
            *next = n;
        if (n <= t && strcmp(st, "OK") == 0)
            *again = true;
    }
    return 0;
}

/* Ticks at t until nothing new is journaled, so deadlines set by handled events are seen. */
static int s_settle(sc__daemon_t *d, sc_time_t t, sc_time_t *next, int64_t deadline_ms)
{
    int rc = 0;
    bool again = false;
    for (int round = 0; round < 100; round++) {
        int64_t head = atomic_load(&sc__stats.head);
        if ((rc = s_tick_all(d, t, next, &again, deadline_ms)) < 0 ||
            (rc = s_sync_all(d, deadline_ms)) < 0)
            return rc;
        if (atomic_load(&sc__stats.head) == head && !again)
            break;
    }
    return rc;
}

int sc__runners_advance(sc__daemon_t *d, sc_time_t to, char *err, size_t errlen)
{
    int64_t deadline = sc__mono_ms() + sc__cfg_int(d->cfg->core, "clock", "sync_timeout") * 1000;
    sc_time_t cur = sc__clock_now(), next;
    int rc;
    if ((rc = s_sync_all(d, deadline)) < 0)
        goto timeout;
    if (to > cur) {
        /* Step through every instant a plugin asked for, as if the time between had passed. */
        for (long steps = 0; steps < 1000000; steps++) {
            if ((rc = s_settle(d, cur, &next, deadline)) < 0)
                goto timeout;
            if (next > to)
                break;
            cur = next;
            sc__clock_set(cur);
        }
    }
    sc__clock_set(to);
    if ((rc = s_settle(d, to, &next, deadline)) < 0)
        goto timeout;
    return 0;
timeout:
    snprintf(err, errlen, "clock: plugins did not catch up within clock.sync_timeout");
    return rc;
}

void sc__runners_reload(sc__daemon_t *d, sc__registry_t *fresh)
{
    for (size_t i = 0; i < d->nrunners; i++) {
        sc__runner_t *r = d->runners[i];
        int k = sc__registry_slot(fresh, r->p->name);
        if (k < 0 || json_equal(fresh->slots[k].config, r->slot->config))
            continue;
        char *text = json_dumps(fresh->slots[k].config, JSON_COMPACT);
        zmq_msg_t reply;
        char st[16] = "";
        int rc = s_request(r, "RELOAD", text, strlen(text), 30000, &reply, st, sizeof st);
        free(text);
        if (rc == 0)
            zmq_msg_close(&reply);
        if (rc == 0 && strcmp(st, "OK") == 0) {
            json_decref(r->slot->config);
            r->slot->config = json_incref(fresh->slots[k].config);
            sc__log(SC_LOG_NOTICE, r->p->name, "new settings applied");
        } else {
            sc__log(SC_LOG_ERR, r->p->name, "new settings refused by the plugin's init");
        }
    }
}
