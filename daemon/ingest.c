/*
 * Ingest: one thread checks each frame from the ROUTER socket and journals whatever arrived
 * while the last batch was in the database as the next batch, one statement and one
 * transaction (group commit); only once it is committed are the senders acked.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_CONTROL_PIPE "inproc://sc-ingest-control"
#define S_MAX_ROUTE 4 /* routing frames kept per message: identity, REQ's empty delimiter … */

sc__stats_t sc__stats;

/*
 * Intake is busy while senders queue in front of it: a turn of its loop found at least
 * ingest.busy messages waiting at the socket, or its queue is full and reading has paused.
 * Not the events waiting for the journal: those pass any mark during one slow commit while
 * intake keeps up, and plugins held back for them fell behind at half the burst maximum with
 * a third of a core idle. Busy lasts this long after it was last seen.
 */
#define S_BUSY_HOLD_MS 200

bool sc__intake_busy(void)
{
    return sc__mono_ms() < atomic_load(&sc__stats.busy_until_ms);
}

void sc__stats_head(int64_t id)
{
    int_fast64_t cur = atomic_load(&sc__stats.head);
    while (id > cur && !atomic_compare_exchange_weak(&sc__stats.head, &cur, id))
        ;
}

typedef struct s_item {
    zmq_msg_t route[S_MAX_ROUTE];
    int nroute;
    zmq_msg_t body;
    sc__envelope_t env;
    sc__jentry_t je;
    int result;       /* SC__OK or an error code, once the journal has answered */
    int64_t taken_us; /* when its frame was read off the socket (stats.in_daemon) */
} s_item_t;

/*
 * Events journaled together; batches are chains of chunks. A chunk holds S_CHUNK_ITEMS:
 * small enough to come from the heap (one of 1024 items took half a megabyte, mapped and
 * unmapped for each event arriving alone), large enough that a burst costs the journal one
 * part per 64 events. Its arena holds its items' parsed frames until the chunk is used
 * again, after the publisher is done with them.
 */
#define S_CHUNK_ITEMS 64

typedef struct s_chunk {
    struct s_chunk *next;
    size_t n, cap;
    sc__arena_t arena; /* its items' parsed frames */
    sc__jcols_t cols;  /* its items as the journal's columns */
    bool directory;    /* it holds directory.* events: see sc__directory_epoch() */
    s_item_t items[];
} s_chunk_t;

struct sc__ingest {
    sc__daemon_t *d;
    pthread_t ingest_thread;
    void *control; /* main's end of the control pipe */
    char err[512];
    int start_rc;
};

/*
 * Emptied chunks, kept for the next events: a chunk is 35 KB, and each malloc that large
 * made glibc consolidate every small block freed since (a tenth of the ingest thread's time
 * under load). The publisher empties batches, the ingest thread fills chunks: hence the lock.
 */
#define S_SPARE_MAX 64
static struct {
    pthread_mutex_t lock;
    s_chunk_t *list;
    size_t n;
} s_spare = {.lock = PTHREAD_MUTEX_INITIALIZER};

static s_chunk_t *s_chunk_new(void)
{
    pthread_mutex_lock(&s_spare.lock);
    s_chunk_t *c = s_spare.list;
    if (c) {
        s_spare.list = c->next;
        s_spare.n--;
    }
    pthread_mutex_unlock(&s_spare.lock);
    if (c) {
        sc__arena_reset(&c->arena);
        sc__jcols_reset(&c->cols);
    } else if ((c = malloc(sizeof *c + S_CHUNK_ITEMS * sizeof(s_item_t)))) {
        c->arena = (sc__arena_t){0};
        c->cols = (sc__jcols_t){0};
    }
    if (c) {
        c->directory = false;
        c->next = NULL;
        c->n = 0;
        c->cap = S_CHUNK_ITEMS;
    }
    return c;
}

static void s_chunk_destroy(s_chunk_t *c)
{
    sc__arena_release(&c->arena);
    sc__jcols_free(&c->cols);
    free(c);
}

void sc__ingest_spare_free(void)
{
    pthread_mutex_lock(&s_spare.lock);
    while (s_spare.list) {
        s_chunk_t *c = s_spare.list;
        s_spare.list = c->next;
        s_chunk_destroy(c);
    }
    s_spare.n = 0;
    pthread_mutex_unlock(&s_spare.lock);
}

static void s_chunk_free(s_chunk_t *c)
{
    pthread_mutex_lock(&s_spare.lock);
    if (s_spare.n < S_SPARE_MAX) {
        c->next = s_spare.list;
        s_spare.list = c;
        s_spare.n++;
        c = NULL;
    }
    pthread_mutex_unlock(&s_spare.lock);
    if (c)
        s_chunk_destroy(c);
}

static void s_item_clear(s_item_t *it)
{
    for (int i = 0; i < it->nroute; i++)
        zmq_msg_close(&it->route[i]);
    zmq_msg_close(&it->body);
    sc__envelope_clear(&it->env);
}

void sc__ingest_free_batch(void *batch)
{
    for (s_chunk_t *c = batch, *next; c; c = next) {
        next = c->next;
        for (size_t i = 0; i < c->n; i++)
            s_item_clear(&c->items[i]);
        s_chunk_free(c);
    }
}

/*
 * Publishes every newly journaled event of a batch as [type][envelope + "event"],
 * then frees the batch. The envelope is the sender's own frame with the journal
 * number (and the default occurred_at) spliced in after its opening brace:
 * valid JSON, since the frame was checked to be an object with members.
 */
void sc__ingest_publish_batch(void *pub, void *batch)
{
    char head[256];
    for (s_chunk_t *c = batch; c; c = c->next) {
        for (size_t i = 0; i < c->n; i++) {
            s_item_t *it = &c->items[i];
            if (it->result != SC__OK || it->je.duplicate)
                continue;
            const char *body = zmq_msg_data(&it->body);
            size_t len = zmq_msg_size(&it->body);
            const char *brace = memchr(body, '{', len);
            if (!brace)
                continue;
            int n = snprintf(head, sizeof head, "{\"event\":%lld,", (long long)it->je.event);
            if (it->env.source_filled)
                n += snprintf(head + n, sizeof head - (size_t)n, "\"source\":\"%s\",",
                              it->je.source);
            if (!it->env.has_occurred) {
                char when[SC_TIME_LEN];
                n += snprintf(head + n, sizeof head - (size_t)n, "\"occurred_at\":\"%s\",",
                              sc_time_format(it->je.occurred_at, when));
            }
            size_t rest = len - (size_t)(brace + 1 - body);
            zmq_msg_t m;
            zmq_msg_init_size(&m, (size_t)n + rest);
            memcpy(zmq_msg_data(&m), head, (size_t)n);
            memcpy((char *)zmq_msg_data(&m) + n, brace + 1, rest);
            zmq_send(pub, it->je.type, strlen(it->je.type), ZMQ_SNDMORE);
            if (zmq_msg_send(&m, pub, 0) < 0)
                zmq_msg_close(&m);
        }
    }
    sc__ingest_free_batch(batch);
}

/* ---- the journal's connection ---- */

/* A batch on its way through the journal: its entries as sent, numbered once answered. */
typedef struct s_flight {
    s_chunk_t *batch;
    size_t n;
    sc__jentry_t *entries;
    size_t cap;
    const sc__jcols_t **parts; /* its chunks' columns, parts_cap of them at most */
    size_t parts_cap;
    sc__jcols_t sent; /* the arrays as sent, kept for the next batch's */
    bool directory;   /* it holds directory.* events: see sc__directory_epoch() */
    int64_t sent_us;  /* when its statement was sent (stats.journal) */
} s_flight_t;

typedef struct s_journal {
    PGconn *conn;       /* set up and ready for batches */
    PGconn *connecting; /* being made, without blocking intake meanwhile */
    PostgresPollingStatusType connect_poll;
    int64_t connect_deadline_ms;
    int64_t backoff_ms, next_attempt_ms;
    /* One batch in the database while the next is gathered; the one answered is acked after
     * the next is sent, so two are enough. */
    s_flight_t slot[2];
    s_flight_t *flying;
    /* school → district, so the journal's district column costs the database no
     * look-up for a school already known; read from core.schools at each
     * connection, then kept up to date from the upserts journaled. */
    json_t *districts;
} s_journal_t;

typedef struct s_ingest {
    sc__daemon_t *d;
    void *router, *control, *publish;
    s_journal_t j;
    /* Events checked and waiting for the journal, in arrival order; the last chunk fills. */
    s_chunk_t *queue, *queue_tail;
    size_t queued;
    size_t queue_max, busy, batch_max;
    size_t take_max;      /* most messages read in one turn of the loop */
    int64_t spin_us;      /* ingest.spin_us: see s_spin() */
    bool spun;            /* s_spin() has waited for the batch in flight already */
    int64_t next_take_us; /* while a batch is in the database, intake reads again then */
} s_ingest_t;

/*
 * While a batch is in the database, what arrives can only go into the next one: intake then
 * reads at most once per S_GATHER_US, everything that came meanwhile, instead of waking for
 * each message as it arrives (here a wake-up costs more than the message).
 */
#define S_GATHER_US 1000

static size_t s_inflight(const s_ingest_t *in)
{
    return in->queued + (in->j.flying ? in->j.flying->n : 0);
}

static void s_journal_load_districts(s_journal_t *j)
{
    json_object_clear(j->districts);
    PGresult *res = PQexec(j->conn, "SELECT school, district FROM core.schools");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(res); i++)
            json_object_set_new(j->districts, PQgetvalue(res, i, 0),
                                json_string(PQgetvalue(res, i, 1)));
    PQclear(res);
}

/*
 * After a batch is committed: what its school upserts taught. The batch sent meanwhile may
 * lack those districts; the journal then takes them from core.schools, committed by now.
 */
static void s_journal_learn(s_journal_t *j, s_chunk_t *batch)
{
    for (s_chunk_t *c = batch; c; c = c->next) {
        for (size_t i = 0; i < c->n; i++) {
            s_item_t *it = &c->items[i];
            if (it->result != SC__OK || it->je.duplicate ||
                strcmp(it->je.type, "directory.school.upserted") != 0)
                continue;
            const char *district = sc_json_str(it->env.ev.data, "district");
            if (district && it->je.school)
                json_object_set_new(j->districts, it->je.school, json_string(district));
            sc__security_school(it->je.school, district);
        }
    }
}

/* A connection is made: set it up, or give it up (conn becomes NULL, err written). */
static void s_journal_ready(s_ingest_t *in, PGconn *conn, char *err, size_t errlen)
{
    s_journal_t *j = &in->j;
    if (sc__db_session(conn, err, errlen) < 0) {
        PQfinish(conn);
        return;
    }
    if (sc__journal_prepare(conn) < 0) {
        snprintf(err, errlen, "could not prepare the journal's statement: %s",
                 PQerrorMessage(conn));
        PQfinish(conn);
        return;
    }
    if (j->backoff_ms)
        sc__log(SC_LOG_NOTICE, "journal", "database reachable again: taking events");
    j->conn = conn;
    s_journal_load_districts(j);
    j->backoff_ms = 0;
    atomic_store(&sc__stats.db_up, true);
}

/* An attempt failed: the next one after a doubling back-off. */
static void s_journal_retry(s_ingest_t *in, const char *err)
{
    s_journal_t *j = &in->j;
    int64_t max = sc__cfg_int(in->d->cfg->core, "database", "reconnect_max") * 1000;
    j->backoff_ms = sc__backoff_next(j->backoff_ms, 100, max > 100 ? max : 100);
    j->next_attempt_ms = sc__mono_ms() + j->backoff_ms;
    SC__LOG(SC_LOG_WARNING, "journal", "%s; next attempt in %lld ms", err,
            (long long)j->backoff_ms);
}

/*
 * Goes on making a connection while there is none: starts an attempt when the back-off allows,
 * or takes the next step of the one under way once its socket is ready. Intake meanwhile
 * answers every event unavailable at once, whatever the database's network does.
 */
static void s_journal_connect(s_ingest_t *in, bool socket_ready)
{
    s_journal_t *j = &in->j;
    char err[512];
    const char *conninfo = in->d->conninfo;
    int64_t now = sc__mono_ms();
    if (j->conn)
        return;
    if (!j->connecting) {
        if (now < j->next_attempt_ms)
            return;
        j->connecting = sc__db_connect_start(conninfo, "journal", &j->connect_deadline_ms);
        j->connect_poll = PGRES_POLLING_WRITING;
        if (j->connecting && PQstatus(j->connecting) != CONNECTION_BAD)
            return; /* the first step waits for the socket to be writable */
    } else if (socket_ready) {
        j->connect_poll = PQconnectPoll(j->connecting);
        if (j->connect_poll == PGRES_POLLING_OK) {
            PGconn *conn = j->connecting;
            j->connecting = NULL;
            s_journal_ready(in, conn, err, sizeof err);
            if (!j->conn)
                s_journal_retry(in, err);
            return;
        }
        if (j->connect_poll != PGRES_POLLING_FAILED && now < j->connect_deadline_ms)
            return;
    } else if (now < j->connect_deadline_ms) {
        return;
    }
    snprintf(err, sizeof err, "could not connect to \"%s\": %s", conninfo,
             !j->connecting                              ? "out of memory"
             : PQstatus(j->connecting) == CONNECTION_BAD ? PQerrorMessage(j->connecting)
                                                         : "timed out");
    PQfinish(j->connecting);
    j->connecting = NULL;
    s_journal_retry(in, err);
}

static void s_journal_lost(s_journal_t *j, const char *err)
{
    sc__log(SC_LOG_ERR, "journal", "%s: answering unavailable until the database is back", err);
    atomic_store(&sc__stats.db_up, false);
    PQfinish(j->conn);
    j->conn = NULL;
    j->next_attempt_ms = 0;
}

/* A batch the journal refused or never got: a lost connection is dropped, the rest logged. */
static void s_journal_failed(s_journal_t *j, int rc, const char *err)
{
    if (PQstatus(j->conn) != CONNECTION_OK || rc == -EAGAIN)
        s_journal_lost(j, err);
    else
        sc__log(SC_LOG_ERR, "journal", "%s", err);
}

/*
 * Sends a batch to the journal without waiting for the answer. Returns 0, or < 0 when it
 * could not be sent: every item of it is then answered unavailable.
 */
static int s_journal_send(s_journal_t *j, s_flight_t *f)
{
    char err[1024];
    f->directory = false;
    size_t nparts = 0;
    for (s_chunk_t *c = f->batch; c; c = c->next)
        nparts++;
    if (f->n > f->cap) {
        sc__jentry_t *e = realloc(f->entries, f->n * 2 * sizeof *e);
        if (!e)
            return -ENOMEM;
        f->entries = e;
        f->cap = f->n * 2;
    }
    if (nparts > f->parts_cap) {
        const sc__jcols_t **p = realloc(f->parts, nparts * 2 * sizeof *p);
        if (!p)
            return -ENOMEM;
        f->parts = p;
        f->parts_cap = nparts * 2;
    }
    size_t n = 0, k = 0;
    for (s_chunk_t *c = f->batch; c; c = c->next) {
        f->parts[k++] = &c->cols;
        f->directory |= c->directory;
        for (size_t i = 0; i < c->n; i++)
            f->entries[n++] = c->items[i].je;
    }
    if (f->directory)
        sc__directory_sending();
    f->sent_us = sc__mono_us();
    int rc = j->conn ? sc__journal_send(j->conn, f->parts, nparts, &f->sent, !f->directory, err,
                                        sizeof err)
                     : -EAGAIN;
    if (rc < 0 && j->conn)
        s_journal_failed(j, rc, err);
    return rc;
}

/* Sets each item's result from the journal's answer (rc < 0: unavailable). */
static void s_journal_results(s_journal_t *j, s_flight_t *f, int rc)
{
    size_t n = 0;
    int64_t head = 0;
    for (s_chunk_t *c = f->batch; c; c = c->next) {
        for (size_t i = 0; i < c->n; i++, n++) {
            s_item_t *it = &c->items[i];
            if (rc < 0) {
                it->result = SC__E_UNAVAILABLE;
                continue;
            }
            it->je.event = f->entries[n].event;
            it->je.duplicate = f->entries[n].duplicate;
            it->result = SC__OK;
            if (!it->je.duplicate && it->je.event > head)
                head = it->je.event;
        }
    }
    if (rc == 0) {
        atomic_fetch_add(&sc__stats.batches, 1);
        atomic_fetch_add(&sc__stats.batched_events, f->n);
        sc__tail_append(f->entries, f->n);
        sc__stats_head(head);
        s_journal_learn(j, f->batch);
    }
    if (f->directory)
        sc__directory_sent();
    f->directory = false;
}

/* ---- acks ---- */

/* Appends a JSON string literal of s to buf; the input is valid UTF-8 from jansson. */
static size_t s_json_str(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    if (n < cap)
        buf[n++] = '"';
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    if (n < cap)
        buf[n++] = '"';
    return n;
}

static void s_send_reply(s_ingest_t *in, zmq_msg_t *route, int nroute, const char *reply,
                         size_t len)
{
    for (int i = 0; i < nroute; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &route[i]);
        if (zmq_msg_send(&copy, in->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&copy);
            atomic_fetch_add(&sc__stats.unreachable_peers, 1);
            return; /* the sender has gone: ROUTER_MANDATORY tells us, nothing else to do */
        }
    }
    if (zmq_send(in->router, reply, len, ZMQ_DONTWAIT) < 0)
        atomic_fetch_add(&sc__stats.unreachable_peers, 1);
}

static void s_reply_error(s_ingest_t *in, zmq_msg_t *route, int nroute, int code,
                          const char *detail, const char *id)
{
    atomic_fetch_add(&sc__stats.refused[code], 1);
    char clean[512];
    snprintf(clean, sizeof clean, "%s", detail);
    detail = sc_utf8_clean(clean); /* it may quote the sender's bytes */
    json_t *r = json_pack("{s:b, s:s, s:s, s:s*}", "ok", 0, "error", sc__error_code(code), "detail",
                          detail, "id", id);
    char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
    if (s)
        s_send_reply(in, route, nroute, s, strlen(s));
    free(s);
    json_decref(r);
}

static void s_reply_item(s_ingest_t *in, s_item_t *it, int64_t now_us)
{
    if (it->result != SC__OK) {
        s_reply_error(in, it->route, it->nroute, it->result,
                      "database: the journal is not reachable; resend later", it->env.id);
        return;
    }
    /* Room for an id of 128 bytes even when every byte is escaped as \u00XX. */
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "{\"ok\":true,\"event\":%lld,\"duplicate\":%s",
                     (long long)it->je.event, it->je.duplicate ? "true" : "false");
    if (it->env.id) {
        memcpy(buf + n, ",\"id\":", 6);
        n += 6;
        n += (int)s_json_str(buf + n, sizeof buf - (size_t)n - 2, it->env.id);
    }
    buf[n++] = '}';
    atomic_fetch_add(&sc__stats.acked, 1);
    sc__hist_add(&sc__stats.in_daemon, now_us - it->taken_us);
    if (it->je.duplicate)
        atomic_fetch_add(&sc__stats.duplicates, 1);
    s_send_reply(in, it->route, it->nroute, buf, (size_t)n);
}

/*
 * The journal answered a batch (or it could not be sent): ack each sender first — what
 * they wait for — then wake the plugins it concerns and hand it to the publisher.
 */
static void s_answered(s_ingest_t *in, s_flight_t *f)
{
    s_chunk_t *batch = f->batch;
    bool journaled = batch->items[0].result == SC__OK;
    int64_t now_us = sc__mono_us();
    for (s_chunk_t *c = batch; c; c = c->next)
        for (size_t i = 0; i < c->n; i++)
            s_reply_item(in, &c->items[i], now_us);
    if (journaled)
        sc__runners_wake_for(in->d, f->entries, f->n);
    f->batch = NULL;
    f->n = 0;
    if (journaled && zmq_send(in->publish, "B", 1, ZMQ_SNDMORE) == 1 &&
        zmq_send(in->publish, &batch, sizeof batch, 0) == sizeof batch)
        return; /* the publisher frees it */
    sc__ingest_free_batch(batch);
}

/* The waiting events, up to ingest.batch_max (whole chunks), sent as the next batch. */
static void s_send_next(s_ingest_t *in, const s_flight_t *landed)
{
    s_journal_t *j = &in->j;
    s_flight_t *f = landed == &j->slot[0] ? &j->slot[1] : &j->slot[0];
    s_chunk_t **tail = &f->batch;
    f->batch = NULL;
    f->n = 0;
    while (in->queue && f->n < in->batch_max) {
        s_chunk_t *c = in->queue;
        in->queue = c->next;
        c->next = NULL;
        if (c->n == 0) { /* a chunk begun for a message that was no request */
            s_chunk_free(c);
            continue;
        }
        *tail = c;
        tail = &c->next;
        f->n += c->n;
    }
    if (!in->queue)
        in->queue_tail = NULL;
    in->queued -= f->n;
    if (f->n == 0)
        return;
    if (s_journal_send(j, f) == 0) {
        j->flying = f;
        in->spun = false;
    } else {
        s_journal_results(j, f, -EAGAIN);
        s_answered(in, f);
    }
}

/*
 * One turn of the journal: takes the answer to the batch in the database if it has come,
 * sends what waits as the next batch straight away — the database never waits for the
 * bookkeeping or the acks of the last — and then settles and acks the answered one.
 */
static void s_journal_turn(s_ingest_t *in, bool readable)
{
    s_journal_t *j = &in->j;
    s_flight_t *landed = NULL;
    int rc = 0;
    if (j->flying && readable && (!PQconsumeInput(j->conn) || !PQisBusy(j->conn))) {
        char err[1024];
        landed = j->flying;
        j->flying = NULL;
        rc = sc__journal_receive(j->conn, landed->entries, landed->n, err, sizeof err);
        if (rc < 0)
            s_journal_failed(j, rc, err);
        else
            sc__hist_add(&sc__stats.journal, sc__mono_us() - landed->sent_us);
    }
    if (!j->flying && in->queue)
        s_send_next(in, landed);
    if (landed) {
        s_journal_results(j, landed, rc);
        s_answered(in, landed);
    }
}

/* ---- intake ---- */

/*
 * Reads one message from the ROUTER; replies at once to what cannot be journaled. Returns
 * false when none was waiting (reading until then costs less than asking ZeroMQ first).
 */
static bool s_take(s_ingest_t *in)
{
    s_chunk_t *chunk = in->queue_tail;
    if (!chunk || chunk->n == chunk->cap) {
        if (!(chunk = s_chunk_new()))
            return false;
        if (in->queue_tail)
            in->queue_tail->next = chunk;
        else
            in->queue = chunk;
        in->queue_tail = chunk;
    }
    s_item_t *it = &chunk->items[chunk->n];
    memset(it, 0, sizeof *it);
    zmq_msg_t frames[S_MAX_ROUTE + 1];
    int nframes = 0;
    bool more = true, too_many = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, in->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nframes < S_MAX_ROUTE + 1) {
            frames[nframes++] = m;
        } else {
            too_many = true;
            zmq_msg_close(&m);
        }
    }
    if (nframes < 2 || too_many) { /* not a routed single-frame request: drop it */
        for (int i = 0; i < nframes; i++)
            zmq_msg_close(&frames[i]);
        return nframes > 0;
    }
    atomic_fetch_add(&sc__stats.received, 1);
    it->taken_us = sc__mono_us();
    it->nroute = nframes - 1;
    memcpy(it->route, frames, sizeof(zmq_msg_t) * (size_t)it->nroute);
    it->body = frames[nframes - 1];

    char detail[512];
    sc_time_t now = sc__clock_now();
    /* With CURVE, the ZAP handler named the connection after its source. */
    const char *user = sc__security_curve() ? zmq_msg_gets(&it->body, "User-Id") : NULL;
    /* A refused frame gives its memory back: a stream of them must not fill the chunk's. */
    sc__arena_mark_t mark = sc__arena_mark(&chunk->arena);
    sc__arena_t *was = sc__arena_use(&chunk->arena);
    int code =
        sc__envelope_parse_as(in->d->reg, &in->d->limits, zmq_msg_data(&it->body),
                              zmq_msg_size(&it->body), now, user, &it->env, detail, sizeof detail);
    it->env.in_arena = true;
    if (code == SC__OK &&
        sc__envelope_data_text(&it->env, zmq_msg_data(&it->body), zmq_msg_size(&it->body)) < 0) {
        code = SC__E_INVALID;
        snprintf(detail, sizeof detail, "data: could not be serialised");
    }
    sc__arena_use(was);
    if (code == SC__OK && sc__security_curve() &&
        (!user || sc__security_check(user, &it->env.ev, detail, sizeof detail) < 0)) {
        if (!user)
            snprintf(detail, sizeof detail, "source: the connection is not authenticated");
        code = SC__E_FORBIDDEN;
    }
    if (code == SC__OK && !in->j.conn) {
        code = SC__E_UNAVAILABLE;
        snprintf(detail, sizeof detail, "database: the journal is not reachable; resend later");
    }
    if (code != SC__OK) {
        s_reply_error(in, it->route, it->nroute, code, detail, it->env.id);
        s_item_clear(it);
        sc__arena_rollback(&chunk->arena, mark);
        return true;
    }
    const sc_event_t *ev = &it->env.ev;
    const char *district = ev->district;
    /* A school's own upsert is filed under the district it names, even a new one. Another
     * event takes its school's district as known now; the chunk keeps a copy, as an upsert
     * journaled meanwhile may replace the known one. */
    if (!district && ev->school && strcmp(ev->type, "directory.school.upserted") == 0) {
        district = sc_json_str(ev->data, "district");
    } else if (!district && ev->school) {
        const json_t *known = json_object_get(in->j.districts, ev->school);
        size_t len = json_string_length(known);
        char *copy = known ? sc__arena_alloc(&chunk->arena, len + 1) : NULL;
        if (copy)
            district = memcpy(copy, json_string_value(known), len + 1);
    }
    it->je = (sc__jentry_t){
        .type = ev->type,
        .school = ev->school,
        .district = district,
        .source = ev->source,
        .source_id = ev->source_id,
        .actor = ev->actor,
        .occurred_at = ev->occurred_at,
        .received_at = ev->received_at,
        .data = it->env.data_text,
        .data_len = it->env.data_len,
    };
    if (sc__jcols_add(&chunk->cols, &it->je) < 0) {
        s_reply_error(in, it->route, it->nroute, SC__E_UNAVAILABLE,
                      "daemon: out of memory; resend later", it->env.id);
        s_item_clear(it);
        sc__arena_rollback(&chunk->arena, mark);
        return true;
    }
    chunk->directory |= strncmp(ev->type, "directory.", 10) == 0;
    chunk->n++;
    in->queued++;
    return true;
}

/*
 * Takes what the ROUTER holds, up to take_max messages. Each filled chunk gives the journal a
 * turn: a batch answered meanwhile is followed by the next at once, not after the reading.
 */
static void s_intake(s_ingest_t *in)
{
    size_t taken = 0;
    while (taken < in->take_max && s_inflight(in) < in->queue_max && s_take(in)) {
        if (++taken % S_CHUNK_ITEMS == 0)
            s_journal_turn(in, true);
    }
    /* Senders are queueing in front of us: busy. (A turn reads at most take_max.) */
    if (in->busy > 0 && taken >= (in->busy < in->take_max ? in->busy : in->take_max))
        atomic_store(&sc__stats.busy_until_ms, sc__mono_ms() + S_BUSY_HOLD_MS);
}

static int s_bind_router(s_ingest_t *in, char *err, size_t errlen)
{
    const json_t *core = in->d->cfg->core;
    const char *endpoint = sc__cfg_str(core, "ingest", "endpoint");
    int one = 1, zero = 0;
    int64_t maxmsg = (int64_t)in->d->limits.max_bytes * 4 + 65536;
    in->router = zmq_socket(in->d->zctx, ZMQ_ROUTER);
    /* Acks are never dropped: no send limit, and a gone peer is an error, not silence. */
    zmq_setsockopt(in->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(in->router, ZMQ_SNDHWM, &zero, sizeof zero);
    /* Frames far past the limit cost the sender its connection instead of our memory. */
    zmq_setsockopt(in->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    int linger = 2000;
    zmq_setsockopt(in->router, ZMQ_LINGER, &linger, sizeof linger);
    if (sc__security_setup(in->d, in->router, err, errlen) < 0)
        return -EINVAL;
    if (zmq_bind(in->router, endpoint) < 0) {
        snprintf(err, errlen, "ingest.endpoint: could not bind \"%s\": %s", endpoint,
                 zmq_strerror(zmq_errno()));
        return -EADDRINUSE;
    }
    return 0;
}

/*
 * Waits awake, up to ingest.spin_us, for the journal's answer to a batch of a few events:
 * true when it came (read, waiting to be taken). One event alone in flight had spent as long
 * waking the sleeping ingest thread when its answer came as in the database (a virtual
 * machine's idle CPU takes that long to wake): ack p50 1.03 ms against 0.53 ms awake. A
 * larger batch means events are arriving, and the thread has other work than waiting.
 */
#define S_SPIN_BATCH 4
static bool s_spin(s_ingest_t *in)
{
    s_journal_t *j = &in->j;
    if (in->spin_us <= 0 || in->spun || !j->flying || j->flying->n > S_SPIN_BATCH || !j->conn)
        return false;
    in->spun = true; /* once a batch: a slow commit is waited for asleep */
    int64_t until = sc__mono_us() + in->spin_us;
    while (PQconsumeInput(j->conn) && PQisBusy(j->conn))
        if (sc__mono_us() >= until)
            return false;
    return true; /* the answer, or a broken connection for the turn to find */
}

/* How long the loop may sleep: until the next connection attempt, or its deadline. */
static long s_timeout(const s_ingest_t *in)
{
    const s_journal_t *j = &in->j;
    if (j->conn)
        return -1;
    int64_t left = (j->connecting ? j->connect_deadline_ms : j->next_attempt_ms) - sc__mono_ms();
    return left < 0 ? 0 : (long)left;
}

/*
 * The ingest thread: the ROUTER socket and the journal's connection in one loop, so that an
 * event's way from frame to ack crosses no other thread of the daemon (each hand-off between
 * threads had cost 35–75 µs, a sixth of an event's time in the daemon when alone in flight).
 */
static void *s_ingest_main(void *arg)
{
    struct sc__ingest *self = arg;
    s_ingest_t in = {.d = self->d};
    s_journal_t *j = &in.j;
    pthread_setname_np(pthread_self(), "sc-ingest");
    const json_t *core = in.d->cfg->core;
    in.queue_max = (size_t)sc__cfg_int(core, "ingest", "queue_max");
    in.busy = (size_t)sc__cfg_int(core, "ingest", "busy");
    in.batch_max = (size_t)sc__cfg_int(core, "ingest", "batch_max");
    in.take_max = in.batch_max > 1024 ? 1024 : in.batch_max;
    in.spin_us = sc__cfg_int(core, "ingest", "spin_us");
    j->districts = json_object();
    in.control = zmq_socket(in.d->zctx, ZMQ_PAIR);
    zmq_connect(in.control, S_CONTROL_PIPE);
    in.publish = sc__publish_socket(in.d);

    /* The first attempt is made before binding, so the first senders find the journal. */
    char err[512];
    PGconn *first = sc__db_connect(in.d->conninfo, "journal", err, sizeof err);
    if (first)
        s_journal_ready(&in, first, err, sizeof err);
    if (!j->conn)
        s_journal_retry(&in, err);
    self->start_rc = s_bind_router(&in, self->err, sizeof self->err);
    zmq_send(in.control, "READY", 5, 0);

    bool stopping = self->start_rc < 0;
    while (!stopping || j->flying || in.queue) {
        zmq_pollitem_t pi[3] = {{in.control, 0, ZMQ_POLLIN, 0}};
        int npi = 1, router_at = -1, db_at = -1;
        int64_t now_us = sc__mono_us();
        /* Intake pauses while the journal is behind: ZeroMQ's queues then push back. */
        bool open = !stopping && s_inflight(&in) < in.queue_max;
        bool gathering = j->flying && now_us < in.next_take_us;
        if (open && !gathering)
            pi[router_at = npi++] = (zmq_pollitem_t){in.router, 0, ZMQ_POLLIN, 0};
        if (j->flying)
            pi[db_at = npi++] = (zmq_pollitem_t){NULL, PQsocket(j->conn), ZMQ_POLLIN, 0};
        else if (j->connecting && PQsocket(j->connecting) >= 0)
            pi[db_at = npi++] = (zmq_pollitem_t){
                NULL, PQsocket(j->connecting),
                j->connect_poll == PGRES_POLLING_READING ? ZMQ_POLLIN : ZMQ_POLLOUT, 0};
        /* The answer to a small batch may come sooner than a sleeping thread wakes. */
        bool spun = s_spin(&in);
        long timeout = spun ? 0 : s_timeout(&in);
        if (open && gathering && !spun) {
            long t = (long)((in.next_take_us - now_us + 999) / 1000);
            timeout = timeout < 0 || t < timeout ? t : timeout;
        }
        if (zmq_poll(pi, npi, timeout) < 0) {
            if (zmq_errno() == ETERM)
                break;
            continue;
        }
        bool db_ready = spun || (db_at >= 0 && pi[db_at].revents);
        if (!j->conn)
            s_journal_connect(&in, db_ready);
        if (pi[0].revents & ZMQ_POLLIN) {
            char cmd[16];
            zmq_recv(in.control, cmd, sizeof cmd, 0);
            stopping = true;
            open = false;
        }
        /* Read when told to, and when the answer came: what arrived since the last read
         * then joins the batch sent next rather than the one after. */
        if (open &&
            ((router_at >= 0 && (pi[router_at].revents & ZMQ_POLLIN)) || (db_ready && j->flying))) {
            s_intake(&in);
            in.next_take_us = sc__mono_us() + S_GATHER_US;
        }
        s_journal_turn(&in, db_ready && j->conn);
        /* A full queue has paused intake: senders queue at the socket unread, busy too. */
        if (in.busy > 0 && s_inflight(&in) >= in.queue_max)
            atomic_store(&sc__stats.busy_until_ms, sc__mono_ms() + S_BUSY_HOLD_MS);
    }
    atomic_store(&sc__stats.busy_until_ms, 0);
    PQfinish(j->conn);
    PQfinish(j->connecting);
    json_decref(j->districts);
    for (int i = 0; i < 2; i++) {
        free(j->slot[i].entries);
        free(j->slot[i].parts);
        sc__jcols_free(&j->slot[i].sent);
    }
    sc__ingest_free_batch(in.queue); /* only when the context ended under us */
    zmq_close(in.router);
    zmq_close(in.publish);
    zmq_send(in.control, "DONE", 4, 0);
    zmq_close(in.control);
    return NULL;
}

int sc__ingest_start(sc__daemon_t *d, char *err, size_t errlen)
{
    struct sc__ingest *self = calloc(1, sizeof *self);
    self->d = d;
    self->control = zmq_socket(d->zctx, ZMQ_PAIR);
    zmq_bind(self->control, S_CONTROL_PIPE);
    d->limits.max_bytes = (size_t)sc__cfg_int(d->cfg->core, "ingest", "max_bytes");
    d->limits.max_depth = (int)sc__cfg_int(d->cfg->core, "ingest", "max_depth");
    pthread_create(&self->ingest_thread, NULL, s_ingest_main, self);
    char ready[16];
    zmq_recv(self->control, ready, sizeof ready, 0);
    if (self->start_rc < 0) {
        snprintf(err, errlen, "%s", self->err);
        char done[16];
        zmq_recv(self->control, done, sizeof done, 0);
        pthread_join(self->ingest_thread, NULL);
        zmq_close(self->control);
        free(self);
        return -EINVAL;
    }
    d->ingest = self;
    return 0;
}

void sc__ingest_stop(sc__daemon_t *d)
{
    struct sc__ingest *self = d->ingest;
    if (!self)
        return;
    zmq_send(self->control, "$TERM", 5, 0);
    char done[16];
    zmq_recv(self->control, done, sizeof done, 0);
    pthread_join(self->ingest_thread, NULL);
    zmq_close(self->control);
    free(self);
    d->ingest = NULL;
}
