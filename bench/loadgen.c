/* bench/loadgen.c: drives safecampusd over ZeroMQ, watches plugin lag and checks the journal. */
#include "../daemon/internal.h"
#include "bench.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_MS (INT64_C(1000000))
#define S_SEC (INT64_C(1000000000))
#define S_MAX_LIST 8
#define S_MAX_DUPS 64            /* resends awaiting their reply, per client */
#define S_MAX_CANDS 64           /* acked events kept as candidates for a resend */
#define S_OPEN_RING (1u << 18)   /* open loop: most events in flight per client */
#define S_SAMPLE_NS (500 * S_MS) /* plugin lag sampling period */
#define S_TICK_NS S_MS           /* open loop: shortest time between the clients' wake-ups */
#define S_MAX_CLIENTS 64

static const char *s_usage =
    "usage: loadgen --ingest EP --control EP --conninfo STR --out FILE [options]\n"
    "  --seconds S      measured seconds per step (default 5)\n"
    "  --warmup S       unmeasured seconds before each step (default 1)\n"
    "  --clients K      DEALER clients (default 4): a thread each in closed loop, one thread\n"
    "                   for them all in open loop\n"
    "  --windows LIST   closed loop: events in flight per client (default 1,64,256,1024)\n"
    "  --open LIST      open loop: arrival rates in %% of the best closed-loop rate (25,50,80;\n"
    "                   none: no open-loop steps)\n"
    "  --calm RATE      after w1k1, one client sending RATE events/s in open loop (default 100,\n"
    "                   a district's ordinary morning; 0: none), beside one-row commits at\n"
    "                   the same pace\n"
    "  --catchup S      longest wait for the plugins after a step (default 60)\n"
    "  --tag CODE       prefix of event ids (default: random)\n"
    "  --refinsert PATH run PATH --batched-only for 1 s right before and right after the\n"
    "                   widest closed-loop step: the limit R_db is taken against\n";

typedef struct s_opts {
    const char *ingest, *control, *conninfo, *out, *refinsert;
    double seconds, warmup, catchup;
    int clients;
    pid_t daemon; /* from the control socket's status: whose threads cpu.c counts */
    int windows[S_MAX_LIST], nwindows;
    int open_pct[S_MAX_LIST], nopen;
    double calm; /* events/s of the calm step; 0: none */
    char tag[24];
} s_opts_t;

static void *s_zctx;

static void s_sleep_until(int64_t t)
{
    int64_t now = bench_mono_ns();
    if (t <= now)
        return;
    struct timespec ts = {(time_t)((t - now) / S_SEC), (long)((t - now) % S_SEC)};
    nanosleep(&ts, NULL);
}

static double s_secs(int64_t ns)
{
    return (double)ns / 1e9;
}

/* ---- the control socket ---- */

typedef struct s_ctl {
    const char *endpoint;
    void *sock;
} s_ctl_t;

static void s_ctl_close(s_ctl_t *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
}

/* Sends {"cmd": cmd}; returns the reply (new reference), or NULL after timeout_ms. */
static json_t *s_ctl(s_ctl_t *c, const char *cmd, int timeout_ms)
{
    char req[64];
    json_t *reply = NULL;
    if (!c->sock) {
        int zero = 0;
        c->sock = zmq_socket(s_zctx, ZMQ_REQ);
        zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(c->sock, c->endpoint) < 0) {
            s_ctl_close(c);
            return NULL;
        }
    }
    int n = snprintf(req, sizeof req, "{\"cmd\":\"%s\"}", cmd);
    if (zmq_send(c->sock, req, (size_t)n, 0) < 0) {
        s_ctl_close(c);
        return NULL;
    }
    zmq_pollitem_t pi = {c->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&pi, 1, timeout_ms) == 1) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) >= 0)
            reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        zmq_msg_close(&m);
    }
    if (!reply)
        s_ctl_close(c); /* a REQ socket that missed its reply cannot ask again */
    return reply;
}

/* The "plugins" reply as {name: {"lag", "handled", "cursor"}} (new reference), or NULL. */
static json_t *s_plugins(s_ctl_t *c)
{
    json_t *r = s_ctl(c, "plugins", 5000), *out = NULL, *p;
    size_t i;
    if (!r || !json_is_array(json_object_get(r, "plugins")))
        goto out;
    out = json_object();
    json_array_foreach(json_object_get(r, "plugins"), i, p)
    {
        const char *name = sc_json_str(p, "name");
        if (name)
            json_object_set_new(out, name,
                                json_pack("{s:I, s:I, s:I, s:I}", "lag", sc_json_int(p, "lag", 0),
                                          "handled", sc_json_int(p, "handled", 0), "cursor",
                                          sc_json_int(p, "cursor", 0), "yielded",
                                          sc_json_int(p, "yielded", 0)));
    }
out:
    json_decref(r);
    return out;
}

/* ---- plugin lag, sampled every 0.5 s while a step runs and catches up ---- */

typedef struct s_sampler {
    const char *endpoint;
    int64_t t0;
    atomic_bool stop;
    json_t *samples; /* [{"t": seconds since t0, "plugins": {name: {lag, handled}}}] */
    pthread_t thread;
} s_sampler_t;

static void *s_sampler_main(void *arg)
{
    s_sampler_t *s = arg;
    s_ctl_t ctl = {.endpoint = s->endpoint};
    int64_t next = bench_mono_ns();
    while (!atomic_load(&s->stop)) {
        json_t *p = s_plugins(&ctl);
        if (p)
            json_array_append_new(
                s->samples,
                json_pack("{s:f, s:o}", "t", s_secs(bench_mono_ns() - s->t0), "plugins", p));
        next += S_SAMPLE_NS;
        while (!atomic_load(&s->stop) && bench_mono_ns() < next)
            s_sleep_until(bench_mono_ns() + 20 * S_MS < next ? bench_mono_ns() + 20 * S_MS : next);
    }
    s_ctl_close(&ctl);
    return NULL;
}

/* ---- one client: a DEALER socket in its own thread ---- */

enum {
    S_R_MALFORMED,
    S_R_TOO_LARGE,
    S_R_INVALID,
    S_R_UNKNOWN,
    S_R_FORBIDDEN,
    S_R_UNAVAILABLE,
    S_R_OTHER,
    S_R_COUNT
};
static const char *const s_refusal_names[S_R_COUNT] = {
    "malformed_json", "too_large",   "invalid_event", "unknown_type",
    "forbidden",      "unavailable", "other"};

typedef struct s_slot {
    uint64_t seq; /* 0: free */
    int64_t sent_ns;
    sc_time_t occurred;
} s_slot_t;

typedef struct s_cand {
    uint64_t seq;
    int64_t event;
    sc_time_t occurred;
} s_cand_t;

typedef struct s_dup {
    uint64_t seq;
    int64_t event, sent_ns;
} s_dup_t;

typedef struct s_client {
    /* set by the step */
    const char *ingest, *source, *tag;
    unsigned index, nclients;
    int window;  /* closed loop: events in flight; 0 for open loop */
    double rate; /* open loop: events per second from this client */
    int64_t t_start, t_measure, t_end, drain_ns;
    /* results */
    uint64_t sent, sent_dup, replies, ok_new, ok_dup, acked_window, unanswered, stray;
    uint64_t dup_wrong; /* a resend answered as new, or with another event number */
    uint64_t orig_dup;  /* a first send answered as a duplicate */
    uint64_t ring_full; /* open loop: sends skipped because too much was in flight */
    uint64_t refused[S_R_COUNT];
    char first_refusal[256];
    bench_lat_t lat;
    int64_t *ids;
    size_t nids, capids;
    /* its thread's own (closed loop: its own thread; open loop: one for all) */
    pthread_t thread;
    void *sock;
    s_slot_t *slots;
    size_t mask, inflight;
    uint64_t next_seq;
    s_dup_t dups[S_MAX_DUPS];
    size_t ndups;
    unsigned want_dups;          /* resends due: one per 100 sends */
    s_cand_t cands[S_MAX_CANDS]; /* acked first sends that may be resent: a ring, newest last */
    size_t ncands, cand_next;
} s_client_t;

static void s_id_push(s_client_t *c, int64_t id)
{
    if (c->nids == c->capids) {
        size_t cap = c->capids ? c->capids * 2 : 4096;
        int64_t *p = realloc(c->ids, cap * sizeof *p);
        if (!p)
            return;
        c->ids = p;
        c->capids = cap;
    }
    c->ids[c->nids++] = id;
}

/* Sends one event stamped at stamp_ns (the intended time in open loop); every 100th is a resend. */
static void s_client_send(s_client_t *c, int64_t stamp_ns)
{
    bench_event_t ev;
    char frame[BENCH_FRAME_MAX];
    if ((c->sent + c->sent_dup + 1) % 100 == 0)
        c->want_dups++;
    if (c->want_dups && c->ncands && c->ndups < S_MAX_DUPS) {
        /* The newest candidate: an acked event, each resent at most once. */
        c->cand_next = (c->cand_next + S_MAX_CANDS - 1) % S_MAX_CANDS;
        s_cand_t cand = c->cands[c->cand_next];
        c->ncands--;
        bench_event_make(&ev, c->source, c->tag, c->index, cand.seq, cand.occurred);
        c->dups[c->ndups++] = (s_dup_t){cand.seq, cand.event, stamp_ns};
        c->want_dups--;
        c->sent_dup++;
    } else {
        uint64_t seq = c->next_seq;
        s_slot_t *slot = &c->slots[seq & c->mask];
        if (slot->seq) {
            c->ring_full++;
            return;
        }
        c->next_seq++;
        *slot = (s_slot_t){seq, stamp_ns, bench_wall_us()};
        bench_event_make(&ev, c->source, c->tag, c->index, seq, slot->occurred);
        c->sent++;
    }
    size_t len = bench_event_envelope(&ev, frame, sizeof frame);
    zmq_send(c->sock, frame, len, 0);
    c->inflight++;
}

static int s_refusal_code(const char *error)
{
    for (int i = 0; error && i < S_R_OTHER; i++)
        if (strcmp(error, s_refusal_names[i]) == 0)
            return i;
    return S_R_OTHER;
}

/*
 * Reads one ingest reply. Acks have one fixed shape, read by hand to keep the
 * client's CPU off the daemon's two cores; anything else goes through jansson.
 */
static bool s_parse_reply(const char *buf, size_t len, bool *ok, int64_t *event, bool *dup,
                          const char **id, size_t *idlen, char *code, size_t codelen, char *err,
                          size_t errlen)
{
    static const char head[] = "{\"ok\":true,\"event\":";
    *ok = false;
    *id = NULL;
    *idlen = 0;
    if (len > sizeof head - 1 && memcmp(buf, head, sizeof head - 1) == 0) {
        char *end;
        *event = strtoll(buf + sizeof head - 1, &end, 10);
        const char *d = memmem(buf, len, "\"duplicate\":", 12);
        const char *i = memmem(buf, len, "\"id\":\"", 6);
        if (!d || !i)
            return false;
        *dup = d[12] == 't';
        *id = i + 6;
        const char *q = memchr(*id, '"', len - (size_t)(*id - buf));
        if (!q)
            return false;
        *idlen = (size_t)(q - *id);
        *ok = true;
        return true;
    }
    json_t *r = json_loadb(buf, len, 0, NULL);
    if (!r)
        return false;
    snprintf(code, codelen, "%s", sc_json_str(r, "error") ? sc_json_str(r, "error") : "?");
    snprintf(err, errlen, "%s: %s", code, sc_json_str(r, "detail") ? sc_json_str(r, "detail") : "");
    json_decref(r);
    /* The id points into buf: find it again there. */
    const char *i = memmem(buf, len, "\"id\":\"", 6);
    if (i) {
        *id = i + 6;
        const char *q = memchr(*id, '"', len - (size_t)(*id - buf));
        *idlen = q ? (size_t)(q - *id) : 0;
    }
    return true;
}

static void s_client_reply(s_client_t *c, const char *buf, size_t len, int64_t now)
{
    bool ok, dup;
    int64_t event = 0, sent_ns;
    const char *id;
    size_t idlen;
    char code[32] = "", err[300] = "";
    if (!s_parse_reply(buf, len, &ok, &event, &dup, &id, &idlen, code, sizeof code, err,
                       sizeof err)) {
        c->stray++;
        return;
    }
    uint64_t seq = id ? bench_id_seq(id, idlen) : 0;
    c->replies++;
    size_t k;
    for (k = 0; k < c->ndups && c->dups[k].seq != seq; k++)
        ;
    if (k < c->ndups) { /* the reply to a resend */
        sent_ns = c->dups[k].sent_ns;
        if (ok && (!dup || event != c->dups[k].event))
            c->dup_wrong++;
        else if (ok)
            c->ok_dup++;
        c->dups[k] = c->dups[--c->ndups];
    } else {
        s_slot_t *slot = &c->slots[seq & c->mask];
        if (!seq || slot->seq != seq) {
            c->stray++;
            return;
        }
        sent_ns = slot->sent_ns;
        if (ok && dup) {
            c->orig_dup++;
        } else if (ok) {
            c->ok_new++;
            s_id_push(c, event);
            c->cands[c->cand_next] = (s_cand_t){seq, event, slot->occurred};
            c->cand_next = (c->cand_next + 1) % S_MAX_CANDS;
            if (c->ncands < S_MAX_CANDS)
                c->ncands++;
        }
        slot->seq = 0;
    }
    c->inflight--;
    if (!ok) {
        if (!c->first_refusal[0])
            snprintf(c->first_refusal, sizeof c->first_refusal, "%s", err);
        c->refused[s_refusal_code(code)]++;
        return;
    }
    if (sent_ns >= c->t_measure && sent_ns < c->t_end)
        bench_lat_add(&c->lat, now - sent_ns);
    if (now >= c->t_measure && now < c->t_end)
        c->acked_window++;
}

/* Reads every reply waiting, without blocking. */
static void s_client_drain(s_client_t *c)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) >= 0)
        s_client_reply(c, zmq_msg_data(&m), zmq_msg_size(&m), bench_mono_ns());
    zmq_msg_close(&m);
}

/* Waits until `until` or a reply to any of the n clients, then reads every reply waiting. */
static void s_clients_wait(s_client_t *cs, size_t n, int64_t until)
{
    zmq_pollitem_t pi[S_MAX_CLIENTS];
    int64_t wait = until - bench_mono_ns();
    for (size_t i = 0; i < n; i++)
        pi[i] = (zmq_pollitem_t){cs[i].sock, 0, ZMQ_POLLIN, 0};
    if (wait >= S_MS) {
        zmq_poll(pi, (int)n, (long)(wait / S_MS));
    } else if (wait > 0 && zmq_poll(pi, (int)n, 0) == 0) {
        /* Less than the poll's millisecond: sleep, so the intended send time is kept. */
        s_sleep_until(until);
    }
    for (size_t i = 0; i < n; i++)
        s_client_drain(&cs[i]);
}

/* The client's ring of events in flight and its socket; false when it cannot connect. */
static bool s_client_open(s_client_t *c)
{
    int zero = 0;
    size_t ring = S_OPEN_RING;
    if (c->window) {
        for (ring = 1024; ring < (size_t)c->window * 4; ring *= 2)
            ;
    }
    c->slots = calloc(ring, sizeof *c->slots);
    c->mask = ring - 1;
    c->next_seq = 1;
    c->sock = zmq_socket(s_zctx, ZMQ_DEALER);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &zero, sizeof zero);
    if (!c->slots || zmq_connect(c->sock, c->ingest) < 0) {
        snprintf(c->first_refusal, sizeof c->first_refusal, "could not connect to %s", c->ingest);
        return false;
    }
    return true;
}

static void s_client_close(s_client_t *c)
{
    zmq_close(c->sock);
    c->sock = NULL;
    free(c->slots);
    c->slots = NULL;
}

/* After the step: the replies still owed, waited for up to the drain time. */
static void s_clients_drain(s_client_t *cs, size_t n)
{
    int64_t deadline = cs[0].t_end + cs[0].drain_ns;
    for (;;) {
        size_t owed = 0;
        for (size_t i = 0; i < n; i++)
            owed += cs[i].inflight;
        if (owed == 0 || bench_mono_ns() >= deadline)
            break;
        s_clients_wait(cs, n, bench_mono_ns() + 100 * S_MS);
    }
    for (size_t i = 0; i < n; i++)
        cs[i].unanswered = cs[i].inflight;
}

/* Closed loop, a thread per client: keep `window` events in flight. */
static void *s_closed_main(void *arg)
{
    s_client_t *c = arg;
    if (s_client_open(c)) {
        s_sleep_until(c->t_start);
        while (bench_mono_ns() < c->t_end) {
            uint64_t skipped = c->ring_full;
            while (c->inflight < (size_t)c->window && c->ring_full == skipped)
                s_client_send(c, bench_mono_ns());
            int64_t until = bench_mono_ns() + 100 * S_MS;
            s_clients_wait(c, 1, until < c->t_end ? until : c->t_end);
        }
        s_clients_drain(c, 1);
    }
    s_client_close(c);
    return NULL;
}

typedef struct s_open {
    s_client_t *cs;
    size_t n;
} s_open_t;

/*
 * Open loop: every client sends at its intended times, whatever the replies do. One
 * thread drives them all and wakes at most once per S_TICK_NS: what came due meanwhile
 * goes together, its latency counted from its intended time. A wake-up per event cost
 * the load generator a third of the machine at 15 000 events/s, and a thread per
 * client still a third at any rate (a wake-up costs ~50 us of CPU on this kind of
 * virtual machine): the load generator's CPU is taken from the daemon's two cores.
 */
static void *s_open_main(void *arg)
{
    const s_open_t *o = arg;
    s_client_t *cs = o->cs;
    int64_t next[S_MAX_CLIENTS], interval[S_MAX_CLIENTS], t_end = cs[0].t_end;
    bool ok = true;
    for (size_t i = 0; i < o->n; i++) {
        ok = s_client_open(&cs[i]) && ok;
        interval[i] = (int64_t)(1e9 / cs[i].rate);
        next[i] = cs[i].t_start + interval[i] * (int64_t)i / (int64_t)o->n;
    }
    if (ok) {
        s_sleep_until(cs[0].t_start);
        for (;;) {
            int64_t now = bench_mono_ns(), soonest = t_end;
            if (now >= t_end)
                break;
            for (size_t i = 0; i < o->n; i++) {
                for (; next[i] <= now && next[i] < t_end; next[i] += interval[i])
                    s_client_send(&cs[i], next[i]);
                soonest = next[i] < soonest ? next[i] : soonest;
            }
            int64_t until = soonest > now + S_TICK_NS ? soonest : now + S_TICK_NS;
            s_clients_wait(cs, o->n, until < t_end ? until : t_end);
        }
        s_clients_drain(cs, o->n);
    }
    for (size_t i = 0; i < o->n; i++)
        s_client_close(&cs[i]);
    return NULL;
}

/* ---- the ZeroMQ round trip, for the latency ratio ---- */

typedef struct s_echo {
    void *sock;
    atomic_bool stop;
} s_echo_t;

static void *s_echo_main(void *arg)
{
    s_echo_t *e = arg;
    zmq_msg_t id, body;
    while (!atomic_load(&e->stop)) {
        zmq_pollitem_t pi = {e->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 100) != 1)
            continue;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, e->sock, 0) >= 0 && zmq_msg_recv(&body, e->sock, 0) >= 0) {
            zmq_msg_send(&id, e->sock, ZMQ_SNDMORE);
            zmq_msg_send(&body, e->sock, 0);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/*
 * Round trips of one event-sized frame, DEALER to ROUTER over TCP loopback, one in flight:
 * back to back, or (after the warm-up) one each pace_ns, as the calm step sends.
 */
static json_t *s_echo_rtt(double seconds, int64_t pace_ns)
{
    s_echo_t e = {.sock = zmq_socket(s_zctx, ZMQ_ROUTER)};
    void *dealer = zmq_socket(s_zctx, ZMQ_DEALER);
    char endpoint[256], frame[BENCH_FRAME_MAX];
    size_t elen = sizeof endpoint;
    int zero = 0;
    bench_lat_t lat = {0};
    bench_event_t ev;
    pthread_t th;
    json_t *out = NULL;

    zmq_setsockopt(e.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(e.sock, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(e.sock, ZMQ_LAST_ENDPOINT, endpoint, &elen) < 0 ||
        zmq_connect(dealer, endpoint) < 0)
        goto out;
    /* From here until the join, only the echo thread touches its socket. */
    pthread_create(&th, NULL, s_echo_main, &e);
    bench_event_make(&ev, "bench-echo", "echo", 0, 1, bench_wall_us());
    size_t len = bench_event_envelope(&ev, frame, sizeof frame);
    int64_t end = 0, next = 0;
    for (int i = 0;; i++) {
        if (end && pace_ns) {
            s_sleep_until(next);
            next += pace_ns;
        }
        int64_t t = bench_mono_ns();
        if (i == 200) { /* the first round trips connect and warm up */
            end = t + (int64_t)(seconds * 1e9);
            next = t + pace_ns;
        }
        if (end && t >= end)
            break;
        zmq_send(dealer, frame, len, 0);
        zmq_pollitem_t pi = {dealer, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 5000) != 1)
            break;
        zmq_recv(dealer, frame, sizeof frame, 0);
        if (end)
            bench_lat_add(&lat, bench_mono_ns() - t);
    }
    atomic_store(&e.stop, true);
    pthread_join(th, NULL);
    out = bench_lat_summary(&lat);
out:
    zmq_close(e.sock);
    zmq_close(dealer);
    bench_lat_free(&lat);
    return out;
}

/* ---- the directory the load refers to ---- */

static int s_send_directory(const s_opts_t *o, char *err, size_t errlen)
{
    void *sock = zmq_socket(s_zctx, ZMQ_DEALER);
    int zero = 0, rc = -EIO;
    size_t sent = 0, answered = 0;
    char buf[1024];
    json_t *evs = json_array();
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_connect(sock, o->ingest);

    json_array_append_new(evs,
                          json_pack("{s:s, s:s, s:{s:s, s:s}}", "type",
                                    "directory.district.upserted", "district", BENCH_DISTRICT,
                                    "data", "district", BENCH_DISTRICT, "name", "Bench District"));
    for (int s = 1; s <= BENCH_SCHOOLS; s++) {
        char school[16], name[64];
        snprintf(school, sizeof school, "sch-b%02d", s);
        snprintf(name, sizeof name, "Bench Primary School No. %d", s);
        json_array_append_new(evs, json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "type",
                                             "directory.school.upserted", "school", school, "data",
                                             "name", name, "district", BENCH_DISTRICT, "timezone",
                                             "Asia/Shanghai"));
        static const char *const roles[][2] = {{"principal", "principal"},
                                               {"safety", "safety_officer"},
                                               {"doctor", "school_doctor"},
                                               {"office", "teacher"},
                                               {"guard", "teacher"}};
        for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
            char person[32];
            snprintf(person, sizeof person, "p-b%02d-%s", s, roles[r][0]);
            json_array_append_new(evs, json_pack("{s:s, s:s, s:{s:s, s:s, s:[s]}}", "type",
                                                 "directory.person.upserted", "school", school,
                                                 "data", "person", person, "name", person, "roles",
                                                 roles[r][1]));
        }
        for (int k = 1; k <= BENCH_CLASSES; k++) {
            char klass[16], teacher[32];
            snprintf(klass, sizeof klass, "c-%d", k);
            snprintf(teacher, sizeof teacher, "t-b%02d-%d", s, k);
            json_array_append_new(evs,
                                  json_pack("{s:s, s:s, s:{s:s, s:i, s:s}}", "type",
                                            "directory.class.upserted", "school", school, "data",
                                            "class", klass, "grade", k, "head_teacher", teacher));
            for (int st = 1; st <= BENCH_STUDENTS; st++) {
                char student[32];
                snprintf(student, sizeof student, "st-b%02d-%d-%02d", s, k, st);
                json_array_append_new(evs, json_pack("{s:s, s:s, s:{s:s, s:s}}", "type",
                                                     "directory.student.upserted", "school", school,
                                                     "data", "student", student, "class", klass));
            }
        }
    }
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        char id[64];
        snprintf(id, sizeof id, "%s.dir.%zu", o->tag, i);
        json_object_set_new(ev, "source", json_string("bench-directory"));
        json_object_set_new(ev, "id", json_string(id));
        char *s = json_dumps(ev, JSON_COMPACT);
        if (s && zmq_send(sock, s, strlen(s), 0) >= 0)
            sent++;
        free(s);
    }
    zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
    while (answered < sent && zmq_poll(&pi, 1, 30000) == 1) {
        int n = zmq_recv(sock, buf, sizeof buf - 1, 0);
        if (n < 0)
            break;
        buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = '\0';
        answered++;
        if (strncmp(buf, "{\"ok\":true", 10) != 0) {
            snprintf(err, errlen, "directory event refused: %.400s", buf);
            goto out;
        }
    }
    if (answered < sent) {
        snprintf(err, errlen, "directory: %zu of %zu events answered", answered, sent);
        goto out;
    }
    rc = (int)sent;
out:
    json_decref(evs);
    zmq_close(sock);
    return rc;
}

/* ---- one step ---- */

typedef struct s_step {
    char name[32];
    int clients, window; /* window 0: open loop */
    int pct;             /* open loop: percent of the best closed-loop rate */
    double rate;         /* open loop: events per second in total */
} s_step_t;

/*
 * Waits until every plugin's lag is 0, or o->catchup seconds. Returns, per plugin (new
 * reference): when it caught up (seconds after the load ended), or the lag left; and how
 * fast it went through the journal meanwhile (cursor positions and its own events per second).
 */
static json_t *s_catch_up(const s_opts_t *o, s_ctl_t *ctl, int64_t t_end, bool *all)
{
    json_t *start = s_plugins(ctl), *out = json_object(), *now = NULL, *v;
    int64_t t_start = bench_mono_ns(), deadline = t_start + (int64_t)(o->catchup * 1e9);
    const char *name;
    *all = false;
    if (!start)
        return out;
    for (;;) {
        json_decref(now);
        now = s_plugins(ctl);
        int64_t t = bench_mono_ns();
        bool timeout = t >= deadline;
        size_t done = 0;
        json_object_foreach(now, name, v)
        {
            json_t *rec = json_object_get(out, name);
            json_int_t lag = sc_json_int(v, "lag", 1);
            if (lag != 0 && rec) /* it fell behind again (another plugin's emitted events) */
                json_object_del(out, name);
            done += lag == 0;
            if ((lag != 0 && !timeout) || (lag == 0 && rec))
                continue;
            const json_t *s0 = json_object_get(start, name);
            double dt = s_secs(t - t_start);
            json_int_t moved = sc_json_int(v, "cursor", 0) - sc_json_int(s0, "cursor", 0);
            json_int_t handled = sc_json_int(v, "handled", 0) - sc_json_int(s0, "handled", 0);
            bool timed = dt > 0.2 && moved > 0;
            json_object_set_new(
                out, name,
                json_pack(
                    "{s:o, s:I, s:I, s:I, s:o, s:o, s:o}", "catchup_s",
                    lag == 0 ? json_real(s_secs(t - t_end)) : json_null(), "lag_left", lag,
                    "lag_at_load_end", sc_json_int(s0, "lag", 0), "handled_after_load", handled,
                    "journal_per_s", timed ? json_real((double)moved / dt) : json_null(),
                    "handled_per_s", timed ? json_real((double)handled / dt) : json_null(),
                    "estimated_catchup_s",
                    lag && timed ? json_real(s_secs(t - t_end) + (double)lag * dt / (double)moved)
                                 : json_null()));
        }
        if (now && done == json_object_size(now)) {
            *all = true;
            break;
        }
        if (timeout)
            break;
        s_sleep_until(t + 100 * S_MS);
    }
    json_decref(start);
    json_decref(now);
    return out;
}

/*
 * Per plugin, from the samples taken while the load ran: max lag, lag slope, handled/s, and
 * how many times it held a batch back for a busy intake (plugins.yield).
 */
static json_t *s_lag_summary(json_t *samples, double from, double to)
{
    json_t *out = json_object(), *s, *v;
    size_t i;
    const char *name;
    json_t *names =
        json_array_size(samples) ? json_object_get(json_array_get(samples, 0), "plugins") : NULL;
    json_object_foreach(names, name, v)
    {
        double n = 0, st = 0, sl = 0, stt = 0, stl = 0, t0 = -1, t1 = 0, last = 0;
        json_int_t max = 0, h0 = 0, h1 = 0, y0 = 0, y1 = 0;
        json_array_foreach(samples, i, s)
        {
            double t = json_real_value(json_object_get(s, "t"));
            json_t *p = json_object_get(json_object_get(s, "plugins"), name);
            if (!p || t < from || t > to)
                continue;
            json_int_t lag = sc_json_int(p, "lag", 0);
            if (lag > max)
                max = lag;
            if (t0 < 0) {
                t0 = t;
                h0 = sc_json_int(p, "handled", 0);
                y0 = sc_json_int(p, "yielded", 0);
            }
            t1 = t;
            h1 = sc_json_int(p, "handled", 0);
            y1 = sc_json_int(p, "yielded", 0);
            last = (double)lag;
            n++;
            st += t;
            sl += (double)lag;
            stt += t * t;
            stl += t * (double)lag;
        }
        double den = n * stt - st * st;
        json_object_set_new(
            out, name,
            json_pack(
                "{s:I, s:f, s:o, s:o, s:I}", "max_lag", max, "lag_at_end", last, "lag_slope_per_s",
                n >= 3 && den > 0 ? json_real((n * stl - st * sl) / den) : json_null(),
                "handled_per_s", t1 > t0 ? json_real((double)(h1 - h0) / (t1 - t0)) : json_null(),
                "yielded", y1 - y0));
    }
    return out;
}

/*
 * One-row INSERTs for `seconds`, each its own synchronous commit, into a scratch
 * table, right beside a latency step: the commit floor of the latency ratio, taken
 * minutes apart from nothing (disk flush times drift a lot on shared machines).
 * Back to back, or one each pace_ns (the calm step's floor).
 */
static int s_commit_probe(PGconn *db, double seconds, int64_t pace_ns, bench_lat_t *lat)
{
    PGresult *res = PQexec(db, "SET client_min_messages = warning;"
                               " CREATE TABLE IF NOT EXISTS bench_commit_probe"
                               " (id bigserial PRIMARY KEY, at timestamptz, data jsonb)");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;
    PQclear(res);
    bench_event_t ev;
    char data[sizeof ev.data + 1];
    bench_event_make(&ev, "bench-commit", "commit", 0, 1, bench_wall_us());
    snprintf(data, sizeof data, "%.*s", (int)ev.data_len, ev.data);
    const char *p[1] = {data};
    int64_t next = bench_mono_ns(), end = next + (int64_t)(seconds * 1e9);
    for (int i = 0; rc == 0 && i < 5000 && bench_mono_ns() < end; i++) {
        s_sleep_until(next);
        next += pace_ns;
        int64_t t0 = bench_mono_ns();
        res = PQexecParams(db, "INSERT INTO bench_commit_probe (at, data) VALUES (now(), $1)", 1,
                           NULL, p, NULL, NULL, 0);
        int64_t dt = bench_mono_ns() - t0;
        rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;
        PQclear(res);
        if (rc == 0)
            bench_lat_add(lat, dt);
    }
    if (rc < 0)
        fprintf(stderr, "loadgen: commit probe: %s", PQerrorMessage(db));
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
 * Checks the journal against what was acked: every acked event number is a row
 * of this step's source, no (source, id) twice, no row that was not acked.
 */
static json_t *s_verify(PGconn *db, const char *source, const int64_t *ids, size_t n,
                        uint64_t unanswered, bool *pass)
{
    sc_pqbuf_t arr = {0};
    json_t *out = NULL;
    PGresult *res = NULL;
    *pass = false;
    if (sc_pqarray_begin(&arr, n, SC_PQ_INT8OID, false) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (sc_pqfield_int8(&arr, ids[i]) < 0)
            goto out;
    const char *values[2] = {source, arr.p};
    int lengths[2] = {0, (int)arr.len}, formats[2] = {0, 1};
    res = PQexecParams(db,
                       "WITH a AS (SELECT id FROM unnest($2::bigint[]) a(id)),"
                       " j AS (SELECT id, source_id FROM core.events WHERE source = $1)"
                       " SELECT (SELECT count(*) FROM j),"
                       "        (SELECT count(DISTINCT source_id) FROM j),"
                       "        (SELECT count(*) FROM a WHERE NOT EXISTS"
                       "            (SELECT 1 FROM core.events e WHERE e.id = a.id"
                       "                AND e.source = $1)),"
                       "        (SELECT count(*) - count(DISTINCT id) FROM a)",
                       2, NULL, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        out = json_pack("{s:s}", "error", PQerrorMessage(db));
        goto out;
    }
    long long journaled = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    long long distinct = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    long long missing = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    long long renumbered = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    long long extra = journaled - (long long)n;
    /* Events still unanswered when the step gave up on them may or may not be journaled. */
    *pass = missing == 0 && journaled == distinct && renumbered == 0 && extra >= 0 &&
            extra <= (long long)unanswered;
    out = json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "acked_unique", (json_int_t)n, "journaled",
                    (json_int_t)journaled, "missing", (json_int_t)missing, "duplicates",
                    (json_int_t)(journaled - distinct + renumbered), "journaled_not_acked",
                    (json_int_t)extra, "pass", *pass);
out:
    PQclear(res);
    sc_pqbuf_free(&arr);
    return out;
}

static double s_stat(const json_t *stats, const char *key)
{
    return sc_json_num(stats, key, 0);
}

/*
 * One of the daemon's latency histograms (stats.latency.<name>) over the step: the second
 * reply's buckets less the first's, as sc__hist_percentiles reads them (new reference); null
 * when the daemon gave none.
 */
static json_t *s_daemon_latency(const json_t *stats0, const json_t *stats1, const char *name)
{
    const json_t *b0 =
        json_object_get(json_object_get(json_object_get(stats0, "latency"), name), "buckets");
    const json_t *b1 =
        json_object_get(json_object_get(json_object_get(stats1, "latency"), name), "buckets");
    if (!json_is_array(b1))
        return json_null();
    json_t *diff = json_array();
    size_t i, k = 0;
    const json_t *e1;
    /* Both lists ascend by bucket, and a bucket never empties: walk them side by side. */
    json_array_foreach(b1, i, e1)
    {
        json_int_t upper = json_integer_value(json_array_get(e1, 0));
        json_int_t n = json_integer_value(json_array_get(e1, 1));
        for (; k < json_array_size(b0); k++) {
            const json_t *e0 = json_array_get(b0, k);
            if (json_integer_value(json_array_get(e0, 0)) > upper)
                break;
            if (json_integer_value(json_array_get(e0, 0)) == upper)
                n -= json_integer_value(json_array_get(e0, 1));
        }
        if (n > 0)
            json_array_append_new(diff, json_pack("[I, I]", upper, n));
    }
    json_t *out = sc__hist_percentiles(diff);
    json_decref(diff);
    return out;
}

static json_t *s_run_step(const s_opts_t *o, PGconn *db, const s_step_t *st, bool *pass)
{
    char source[64], tag[64];
    s_ctl_t ctl = {.endpoint = o->control};
    s_client_t *cs = calloc((size_t)st->clients, sizeof *cs);
    s_sampler_t smp = {.endpoint = o->control, .samples = json_array()};
    bench_lat_t lat = {0};
    int64_t *ids = NULL;
    size_t nids = 0;
    json_t *stats0 = NULL, *stats1 = NULL, *step = NULL, *cpu0, *cpu1;
    int64_t wal0, wal1;

    snprintf(source, sizeof source, "bench-%s-%s", o->tag, st->name);
    /* The events' contents follow the tag and their number: without the step in it, every
     * step would send the hazards, visits and absences of the step before again. */
    snprintf(tag, sizeof tag, "%s-%s", o->tag, st->name);
    fprintf(stderr, "loadgen: step %-5s  %d clients, %s %d%s ...", st->name, st->clients,
            st->window ? "window" : "rate", st->window ? st->window : (int)st->rate,
            st->window ? "" : "/s");
    int64_t t_start = bench_mono_ns() + 50 * S_MS;
    int64_t t_measure = t_start + (int64_t)(o->warmup * 1e9);
    int64_t t_end = t_measure + (int64_t)(o->seconds * 1e9);
    smp.t0 = t_start;
    pthread_create(&smp.thread, NULL, s_sampler_main, &smp);
    for (int i = 0; i < st->clients; i++) {
        s_client_t *c = &cs[i];
        c->ingest = o->ingest;
        c->source = source;
        c->tag = tag;
        c->index = (unsigned)i;
        c->nclients = (unsigned)st->clients;
        c->window = st->window;
        c->rate = st->rate / st->clients;
        c->t_start = t_start;
        c->t_measure = t_measure;
        c->t_end = t_end;
        c->drain_ns = 120 * S_SEC;
        if (st->window)
            pthread_create(&c->thread, NULL, s_closed_main, c);
    }
    s_open_t open = {cs, (size_t)st->clients};
    pthread_t open_thread;
    if (!st->window)
        pthread_create(&open_thread, NULL, s_open_main, &open);
    s_sleep_until(t_measure);
    stats0 = s_ctl(&ctl, "stats", 5000);
    wal0 = s_wal_bytes(db);
    cpu0 = bench_cpu_snapshot(db, o->daemon);
    int64_t t_cpu0 = bench_mono_ns();
    s_sleep_until(t_end);
    cpu1 = bench_cpu_snapshot(db, o->daemon);
    json_t *cpu = bench_cpu_diff(cpu0, cpu1, s_secs(bench_mono_ns() - t_cpu0));
    json_decref(cpu0);
    json_decref(cpu1);
    stats1 = s_ctl(&ctl, "stats", 5000);
    wal1 = s_wal_bytes(db);

    json_t *refused = json_object();
    uint64_t sum[12] = {0}; /* sent, dup, ok_new, ok_dup, window, unanswered, stray, dup_wrong,
                               orig_dup, ring_full, refused, replies */
    const char *first_refusal = NULL;
    if (!st->window)
        pthread_join(open_thread, NULL);
    for (int i = 0; i < st->clients; i++) {
        s_client_t *c = &cs[i];
        if (st->window)
            pthread_join(c->thread, NULL);
        uint64_t v[12] = {c->sent,         c->sent_dup,   c->ok_new, c->ok_dup,
                          c->acked_window, c->unanswered, c->stray,  c->dup_wrong,
                          c->orig_dup,     c->ring_full,  0,         c->replies};
        for (int r = 0; r < S_R_COUNT; r++) {
            v[10] += c->refused[r];
            if (c->refused[r])
                json_object_set_new(refused, s_refusal_names[r],
                                    json_integer(sc_json_int(refused, s_refusal_names[r], 0) +
                                                 (json_int_t)c->refused[r]));
        }
        for (int k = 0; k < 12; k++)
            sum[k] += v[k];
        if (c->first_refusal[0] && !first_refusal)
            first_refusal = c->first_refusal;
        bench_lat_merge(&lat, &c->lat);
        int64_t *p = realloc(ids, (nids + c->nids + 1) * sizeof *ids);
        if (p) {
            ids = p;
            memcpy(ids + nids, c->ids, c->nids * sizeof *ids);
            nids += c->nids;
        }
    }
    int64_t t_joined = bench_mono_ns();
    bool caught_up;
    json_t *catchup = s_catch_up(o, &ctl, t_end, &caught_up);
    atomic_store(&smp.stop, true);
    pthread_join(smp.thread, NULL);
    bool verified;
    json_t *verify = s_verify(db, source, ids, nids, sum[5], &verified);
    if (!verify)
        verify = json_pack("{s:s}", "error", "out of memory");

    /* A step that starts behind (the last one's backlog) is marked so. */
    json_int_t lag_at_start = 0;
    const char *pname;
    json_t *pv;
    json_object_foreach(json_object_get(json_array_get(smp.samples, 0), "plugins"), pname, pv)
    {
        if (sc_json_int(pv, "lag", 0) > lag_at_start)
            lag_at_start = sc_json_int(pv, "lag", 0);
    }
    double window = o->seconds;
    double batches = s_stat(stats1, "batches") - s_stat(stats0, "batches");
    double batched = s_stat(stats1, "batches") * s_stat(stats1, "avg_batch") -
                     s_stat(stats0, "batches") * s_stat(stats0, "avg_batch");
    double acked_per_s = (double)sum[4] / window;
    bool clean =
        sum[10] == 0 && sum[7] == 0 && sum[8] == 0 && sum[6] == 0 && sum[9] == 0 && sum[5] == 0;
    *pass = verified && clean;
    step = json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:o, s:s?, s:f, s:o, s:f, s:o, s:o, s:o, s:o, s:o, s:b, s:I, s:o, s:o, s:o, s:b}",
        "name", st->name, "mode", st->window ? "closed" : "open", "source", source, "clients",
        st->clients, "window", st->window, "target_rate", st->rate, "seconds", window, "sent",
        (json_int_t)sum[0], "sent_duplicates", (json_int_t)sum[1], "acked_new", (json_int_t)sum[2],
        "acked_duplicates", (json_int_t)sum[3], "acked_in_window", (json_int_t)sum[4], "unanswered",
        (json_int_t)sum[5], "stray_replies", (json_int_t)sum[6], "wrong_duplicate_replies",
        (json_int_t)(sum[7] + sum[8]), "skipped_sends", (json_int_t)sum[9], "refused_total",
        (json_int_t)sum[10], "refused", refused, "first_refusal", first_refusal, "acked_per_s",
        acked_per_s, "latency_ms", bench_lat_summary(&lat), "commits_per_s", batches / window,
        "avg_batch", batches > 0 ? json_real(batched / batches) : json_null(),
        "wal_bytes_per_event",
        wal0 >= 0 && wal1 >= wal0 && sum[4] ? json_real((double)(wal1 - wal0) / (double)sum[4])
                                            : json_null(),
        "plugins_during_load",
        s_lag_summary(smp.samples, s_secs(t_measure - t_start), s_secs(t_end - t_start)),
        "plugins_after_load", catchup, "drain_s", json_real(s_secs(t_joined - t_end)), "caught_up",
        caught_up, "lag_at_start", lag_at_start, "lag_samples", smp.samples, "cpu", cpu, "verify",
        verify, "pass", *pass);
    json_object_set_new(step, "daemon_latency",
                        json_pack("{s:o, s:o}", "in_daemon",
                                  s_daemon_latency(stats0, stats1, "in_daemon"), "journal",
                                  s_daemon_latency(stats0, stats1, "journal")));
    fprintf(stderr, " %.0f acked/s, p50 %.2f ms, %s\n", acked_per_s,
            json_real_value(json_object_get(json_object_get(step, "latency_ms"), "p50")),
            *pass ? "verified" : "FAILED");
    if (!*pass && first_refusal)
        fprintf(stderr, "loadgen:   first refusal: %s\n", first_refusal);
    for (int i = 0; i < st->clients; i++) {
        bench_lat_free(&cs[i].lat);
        free(cs[i].ids);
    }
    free(cs);
    free(ids);
    bench_lat_free(&lat);
    json_decref(stats0);
    json_decref(stats1);
    s_ctl_close(&ctl);
    return step;
}

/* ---- main ---- */

static int s_list(const char *s, int *out, int max)
{
    int n = 0;
    char *end;
    while (*s && n < max) {
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0)
            return -EINVAL;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -EINVAL;
    }
    return n;
}

static int s_parse_opts(int argc, char **argv, s_opts_t *o)
{
    static const struct option longopts[] = {{"ingest", required_argument, NULL, 'i'},
                                             {"control", required_argument, NULL, 'c'},
                                             {"conninfo", required_argument, NULL, 'd'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"clients", required_argument, NULL, 'k'},
                                             {"windows", required_argument, NULL, 'W'},
                                             {"open", required_argument, NULL, 'O'},
                                             {"catchup", required_argument, NULL, 'C'},
                                             {"tag", required_argument, NULL, 't'},
                                             {"refinsert", required_argument, NULL, 'R'},
                                             {"calm", required_argument, NULL, 'Q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    *o = (s_opts_t){.seconds = 5, .warmup = 1, .catchup = 60, .clients = 4, .calm = 100};
    o->nwindows = s_list("1,64,256,1024", o->windows, S_MAX_LIST);
    o->nopen = s_list("25,50,80", o->open_pct, S_MAX_LIST);
    snprintf(o->tag, sizeof o->tag, "r%06x",
             (unsigned)(bench_mix((uint64_t)bench_mono_ns() ^ (uint64_t)getpid()) & 0xffffff));
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o->ingest = optarg;
            break;
        case 'c':
            o->control = optarg;
            break;
        case 'd':
            o->conninfo = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 's':
            o->seconds = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            break;
        case 'k':
            o->clients = atoi(optarg);
            break;
        case 'C':
            o->catchup = atof(optarg);
            break;
        case 't':
            snprintf(o->tag, sizeof o->tag, "%s", optarg);
            break;
        case 'R':
            o->refinsert = optarg;
            break;
        case 'Q':
            o->calm = atof(optarg);
            if (o->calm < 0 || o->calm > 100000)
                return -EINVAL;
            break;
        case 'W':
            if ((o->nwindows = s_list(optarg, o->windows, S_MAX_LIST)) < 0)
                return -EINVAL;
            break;
        case 'O': /* "none": closed-loop steps only */
            if (strcmp(optarg, "none") == 0)
                o->nopen = 0;
            else if ((o->nopen = s_list(optarg, o->open_pct, S_MAX_LIST)) < 0)
                return -EINVAL;
            break;
        default:
            return -EINVAL;
        }
    }
    if (!o->ingest || !o->control || !o->conninfo || !o->out || o->seconds <= 0 || o->warmup < 0 ||
        o->clients < 1 || o->clients > S_MAX_CLIENTS)
        return -EINVAL;
    return 0;
}

extern char **environ;

/*
 * The batched-insert limit right beside a step: `refinsert --batched-only` for one second
 * while the clients are idle. That limit drifts by a factor of two within minutes here (disk
 * flushes), so R_db is taken against what the database allowed next to the step, not only
 * in the run's first and last minutes. The plugins are let catch up first (up to
 * S_REF_CATCHUP_S): measured beside their catching up, the limit read half what it was and
 * flattered R_db. Returns refinsert's batched phase (new reference: rows_per_s, statement_ms,
 * …, and plugins_caught_up) or NULL.
 */
#define S_REF_CATCHUP_S 120

static json_t *s_reference_beside(const s_opts_t *o, s_ctl_t *ctl, const char *step,
                                  const char *when)
{
    char path[1024], label[64];
    pid_t pid;
    int status;
    s_opts_t patient = *o;
    bool caught = false;
    if (patient.catchup < S_REF_CATCHUP_S)
        patient.catchup = S_REF_CATCHUP_S;
    json_decref(s_catch_up(&patient, ctl, bench_mono_ns(), &caught));
    snprintf(path, sizeof path, "%s.beside-%s.json", o->out, when);
    snprintf(label, sizeof label, "%s-%s", when, step);
    char *argv[] = {(char *)o->refinsert,
                    "--conninfo",
                    (char *)o->conninfo,
                    "--batched-only",
                    "--seconds",
                    "1",
                    "--label",
                    label,
                    "--out",
                    path,
                    NULL};
    if (posix_spawn(&pid, o->refinsert, NULL, NULL, argv, environ) != 0)
        return NULL;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return NULL;
    json_t *r = json_load_file(path, 0, NULL);
    json_t *batched = json_incref(json_object_get(r, "batched_insert"));
    json_decref(r);
    unlink(path);
    if (batched)
        json_object_set_new(batched, "plugins_caught_up", json_boolean(caught));
    return batched;
}

int main(int argc, char **argv)
{
    s_opts_t o;
    int rc = 2;
    PGconn *db = NULL;
    json_t *result = NULL, *steps = json_array(), *status = NULL;
    char err[512];
    bool all_pass = true;
    s_ctl_t ctl = {0};

    if (s_parse_opts(argc, argv, &o) < 0) {
        fputs(s_usage, stderr);
        return 2;
    }
    s_zctx = zmq_ctx_new();
    db = PQconnectdb(o.conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "loadgen: could not connect to \"%s\": %s", o.conninfo, PQerrorMessage(db));
        goto out;
    }
    ctl.endpoint = o.control;
    for (int i = 0; i < 300 && !status; i++) {
        json_decref(status);
        status = s_ctl(&ctl, "status", 1000);
        if (!status || !sc_json_bool(status, "ok", false)) {
            json_decref(status);
            status = NULL;
            s_sleep_until(bench_mono_ns() + 100 * S_MS);
        }
    }
    if (!status) {
        fprintf(stderr, "loadgen: no answer from the daemon's control socket %s\n", o.control);
        goto out;
    }
    o.daemon = (pid_t)sc_json_int(status, "pid", 0);

    fprintf(stderr, "loadgen: ZeroMQ round trip ...");
    json_t *echo = s_echo_rtt(1, 0);
    fprintf(stderr, " p50 %.3f ms\n", echo ? json_real_value(json_object_get(echo, "p50")) : -1.0);

    int ndir = s_send_directory(&o, err, sizeof err);
    if (ndir < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        json_decref(echo);
        goto out;
    }
    bool caught;
    json_decref(s_catch_up(&o, &ctl, bench_mono_ns(), &caught));

    double best = 0;
    s_step_t latency = {.name = "w1k1", .clients = 1, .window = 1};
    bench_lat_t commits = {0};
    bool pass;
    s_commit_probe(db, 1, 0, &commits);
    json_array_append_new(steps, s_run_step(&o, db, &latency, &pass));
    s_commit_probe(db, 1, 0, &commits);
    json_t *commit = bench_lat_summary(&commits);
    bench_lat_free(&commits);
    all_pass &= pass;
    /* A district's ordinary traffic: each event finds the daemon and the database idle,
     * which the closed loop never does; the commits beside it come at the same pace. */
    json_t *calm_commit = NULL, *calm_echo = NULL;
    if (o.calm > 0) {
        s_step_t st = {.clients = 1, .rate = o.calm};
        snprintf(st.name, sizeof st.name, "c%.0f", o.calm);
        int64_t pace = (int64_t)(1e9 / o.calm);
        s_commit_probe(db, 1, pace, &commits);
        json_t *s = s_run_step(&o, db, &st, &pass);
        s_commit_probe(db, 1, pace, &commits);
        json_object_set_new(s, "calm", json_true());
        calm_commit = bench_lat_summary(&commits);
        bench_lat_free(&commits);
        calm_echo = s_echo_rtt(1, pace);
        all_pass &= pass;
        json_array_append_new(steps, s);
    }
    int widest = 0;
    for (int i = 1; i < o.nwindows; i++)
        if (o.windows[i] > o.windows[widest])
            widest = i;
    for (int i = 0; i < o.nwindows; i++) {
        s_step_t st = {.clients = o.clients, .window = o.windows[i]};
        snprintf(st.name, sizeof st.name, "w%d", o.windows[i]);
        bool beside = o.refinsert && i == widest;
        json_t *ref_before = beside ? s_reference_beside(&o, &ctl, st.name, "before") : NULL;
        json_t *s = s_run_step(&o, db, &st, &pass);
        if (beside)
            json_object_set_new(s, "reference_beside",
                                json_pack("{s:o?, s:o?}", "before", ref_before, "after",
                                          s_reference_beside(&o, &ctl, st.name, "after")));
        all_pass &= pass;
        if (sc_json_num(s, "acked_per_s", 0) > best)
            best = sc_json_num(s, "acked_per_s", 0);
        json_array_append_new(steps, s);
    }
    for (int i = 0; i < o.nopen && best > 0; i++) {
        s_step_t st = {.clients = o.clients, .pct = o.open_pct[i]};
        snprintf(st.name, sizeof st.name, "o%d", o.open_pct[i]);
        st.rate = best * o.open_pct[i] / 100.0;
        json_t *s = s_run_step(&o, db, &st, &pass);
        json_object_set_new(s, "percent_of_max", json_integer(o.open_pct[i]));
        all_pass &= pass;
        json_array_append_new(steps, s);
    }
    char now[SC_TIME_LEN];
    result = json_pack("{s:s, s:s, s:f, s:f, s:i, s:o, s:o, s:o?, s:o?, s:i, s:f, s:O, s:o, s:b}",
                       "tag", o.tag, "finished_at", sc_time_format(bench_wall_us(), now), "seconds",
                       o.seconds, "warmup", o.warmup, "clients", o.clients, "zmq_rtt_ms",
                       echo ? echo : json_null(), "commit_ms", commit, "calm_commit_ms",
                       calm_commit, "calm_zmq_rtt_ms", calm_echo, "directory_events", ndir,
                       "max_acked_per_s", best, "daemon", status, "steps", steps, "pass", all_pass);
    steps = NULL;
    if (json_dump_file(result, o.out, JSON_INDENT(1)) < 0) {
        fprintf(stderr, "loadgen: could not write %s\n", o.out);
        goto out;
    }
    rc = all_pass ? 0 : 1;
out:
    json_decref(result);
    json_decref(steps);
    json_decref(status);
    s_ctl_close(&ctl);
    PQfinish(db);
    zmq_ctx_term(s_zctx);
    return rc;
}
