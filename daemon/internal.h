/* safecampusd internals shared between the daemon's modules (not part of the plugin contract). */
#ifndef SC_DAEMON_INTERNAL_H
#define SC_DAEMON_INTERNAL_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- log.c ---- */
extern int sc__log_level;
void sc__log_init(void);
void sc__vlog(int level, const char *component, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) void sc__log(int level, const char *component,
                                                   const char *fmt, ...);
#define SC__LOG(level, comp, ...)                                                                  \
    do {                                                                                           \
        if ((level) <= sc__log_level)                                                              \
            sc__log((level), (comp), __VA_ARGS__);                                                 \
    } while (0)
/* Parses "err", "warning", "notice", "info", "debug"; -1 if none. */
int sc__log_level_parse(const char *s);

/* ---- pconfig.c ---- */
/*
 * Checks a plugin's config section (`given`, an object; may be empty) against
 * its key table and returns in *out a new object holding every key, defaults
 * filled and durations in seconds. On a refusal writes "section.key: rule".
 */
int sc__pconfig_fill(const struct sc_config_key *keys, const char *section, const json_t *given,
                     json_t **out, char *err, size_t errlen);

/* ---- config.c ---- */
typedef struct sc__config {
    char *path;
    json_t *doc;  /* the whole file as JSON */
    json_t *core; /* the core's keys, checked, defaults filled: {"timezone", "ingest":{…}, …} */
} sc__config_t;

/* Reads and checks a config file. On failure writes "file:line: text" or "group.key: rule". */
int sc__config_load(const char *path, sc__config_t **out, char *err, size_t errlen);
void sc__config_free(sc__config_t **cfg);
bool sc__config_is_core_group(const char *name);
/* A plugin's section as given in the file (borrowed), or NULL. */
const json_t *sc__config_section(const sc__config_t *cfg, const char *name);
const char *sc__cfg_str(const json_t *core, const char *group, const char *key);
json_int_t sc__cfg_int(const json_t *core, const char *group, const char *key);
bool sc__cfg_bool(const json_t *core, const char *group, const char *key);

/* ---- plugins.c ---- */
typedef struct sc__slot {
    const struct sc_plugin *p;
    void *dl;
    char *path;
    bool optional;
    json_t *config; /* the plugin's section, checked, defaults filled */
} sc__slot_t;

#define SC__NO_OWNER (-1) /* nobody takes it from senders */
#define SC__CORE (-2)     /* the core's directory types */

typedef struct sc__type {
    const char *name;
    int owner; /* index of the owning slot, SC__CORE or SC__NO_OWNER */
    unsigned flags;
    sc_validate_fn validate;
} sc__type_t;

typedef struct sc__registry {
    sc__slot_t *slots;
    size_t nslots;
    sc__type_t *types; /* sorted by name */
    size_t ntypes;
} sc__registry_t;

/* Opens one plugin and checks its ABI, size and name (expect_name may be NULL). */
int sc__plugin_open(const char *path, const char *expect_name, sc__slot_t *slot, char *err,
                    size_t errlen);
/* Loads the plugins config asks for, checks their sections, builds the type table. */
int sc__registry_load(const sc__config_t *cfg, sc__registry_t **out, char *err, size_t errlen);
void sc__registry_free(sc__registry_t **reg);
/* The entry for a type, or NULL when nobody declares it. Thread-safe (read-only). */
const sc__type_t *sc__registry_type(const sc__registry_t *reg, const char *name);
int sc__registry_slot(const sc__registry_t *reg, const char *name);
bool sc__plugin_declares(const struct sc_plugin *p, const char *type);
/*
 * The type prefixes a plugin is handed when it asks for `wanted` within its own
 * `outer` list (sc_host.subscribe): every prefix both lists let through, the
 * longer of each pair where one starts with the other, none covered by another:
 * ["hazard.", "gate."] and ["hazard.overdue", "gate", "fire."] give
 * ["hazard.overdue", "gate."]. A new NULL-terminated array (sc__strv_free), or
 * NULL when out of memory.
 */
char **sc__subscribe_narrow(const char *const *outer, const char *const *wanted);
void sc__strv_free(char **v);

/* ---- arena.c ---- */
/*
 * Bump allocation, all freed at once. While a thread uses an arena, every jansson allocation
 * in that thread comes from it and jansson's frees do nothing: nothing made before may be
 * freed, and nothing made may outlive the arena's next reset.
 */
typedef struct sc__arena_block {
    struct sc__arena_block *next;
    size_t cap;
    alignas(max_align_t) char mem[];
} sc__arena_block_t;
typedef struct sc__arena {
    sc__arena_block_t *blocks; /* the one filling first */
    char *cur, *end;
} sc__arena_t;

void *sc__arena_alloc(sc__arena_t *a, size_t n);
/* Where the arena is now; rolling back to it frees everything allocated since. */
typedef struct sc__arena_mark {
    sc__arena_block_t *block;
    char *cur, *end;
} sc__arena_mark_t;
sc__arena_mark_t sc__arena_mark(const sc__arena_t *a);
void sc__arena_rollback(sc__arena_t *a, sc__arena_mark_t m);
void sc__arena_reset(sc__arena_t *a);
void sc__arena_release(sc__arena_t *a);
/* Routes jansson's allocations through the arena hooks; once, before any thread starts. */
void sc__arena_json_hooks(void);
/* Makes `a` (or none: NULL) the calling thread's arena for jansson; returns the one before. */
sc__arena_t *sc__arena_use(sc__arena_t *a);

/* ---- envelope.c ---- */
/* Reply error codes of the wire contract. */
enum {
    SC__OK = 0,
    SC__E_MALFORMED,
    SC__E_TOO_LARGE,
    SC__E_INVALID,
    SC__E_UNKNOWN_TYPE,
    SC__E_FORBIDDEN,
    SC__E_UNAVAILABLE,
    SC__E_COUNT
};
const char *sc__error_code(int e);

typedef struct sc__limits {
    size_t max_bytes;
    int max_depth;
} sc__limits_t;

typedef struct sc__envelope {
    json_t *doc;            /* the parsed frame */
    sc_event_t ev;          /* borrows from doc */
    const sc__type_t *type; /* the registry's entry */
    const char *id;         /* the sender's id, to echo (borrowed from doc), or NULL */
    bool has_occurred;      /* occurred_at was given */
    bool source_filled;     /* source was taken from the authenticated connection */
    bool numbers_changed;   /* a number of data was rewritten (see s_numbers) */
    const char *data_text;  /* data as journaled, once sc__envelope_data_text has run */
    size_t data_len;
    bool data_owned; /* data_text was made for it, not the frame's own */
    bool in_arena;   /* doc and data_text are an arena's: clearing leaves them */
} sc__envelope_t;

/*
 * Checks one frame against the envelope rules and the owning plugin's
 * validator. Returns SC__OK, or an error code with detail naming the field and
 * the rule. env->id is set whenever the id could be read, even on error.
 * The caller sc__envelope_clear()s env in every case. Thread-safe.
 */
int sc__envelope_parse(const sc__registry_t *reg, const sc__limits_t *lim, const char *buf,
                       size_t len, sc_time_t now, sc__envelope_t *env, char *detail, size_t dlen);
/* The same, for an authenticated connection: a missing source is filled with `source`. */
int sc__envelope_parse_as(const sc__registry_t *reg, const sc__limits_t *lim, const char *buf,
                          size_t len, sc_time_t now, const char *source, sc__envelope_t *env,
                          char *detail, size_t dlen);
void sc__envelope_clear(sc__envelope_t *env);
/*
 * Sets env->data_text to the text the journal keeps of an accepted frame's data: the frame's
 * own (buf, len: the frame parsed) when the journal would read it back as parsed, else data
 * serialised again. Returns 0 or -ENOMEM.
 */
int sc__envelope_data_text(sc__envelope_t *env, const char *buf, size_t len);

/* ---- journal.c ---- */
typedef struct sc__jentry {
    const char *type, *school, *district, *source, *source_id, *actor;
    sc_time_t occurred_at, received_at;
    const char *data; /* compact JSON of the data object */
    size_t data_len;
    int64_t event;  /* out: the journal number (the original one for a duplicate) */
    bool duplicate; /* out */
} sc__jentry_t;

/*
 * Prepares the statement sc__journal_append runs on conn; once per connection,
 * after the migrations. Returns 0 or a negative errno (sc_pq_error's).
 */
int sc__journal_prepare(PGconn *conn);
/*
 * Journals n events in one statement (its own transaction in autocommit, or
 * part of the caller's) on a connection sc__journal_prepare set up. Fills each
 * entry's event and duplicate. Returns 0, -EAGAIN when the database is
 * unreachable, or -EIO, with err written.
 */
int sc__journal_append(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen);
/*
 * A batch's columns in PostgreSQL's binary array format, without the arrays' headers: entries
 * are added one by one (the ingest thread adds each as it is checked, so that sending a batch
 * is copying, not building), and the columns of several are sent as one batch.
 */
#define SC__JCOLUMNS 9
typedef struct sc__jcols {
    sc_pqbuf_t col[SC__JCOLUMNS];
    size_t n;
} sc__jcols_t;
/* Adds one entry to every column, or to none (-ENOMEM). */
int sc__jcols_add(sc__jcols_t *c, const sc__jentry_t *e);
void sc__jcols_reset(sc__jcols_t *c); /* empty, keeping the memory */
void sc__jcols_free(sc__jcols_t *c);
/*
 * The two halves of sc__journal_append: send the batch made of the columns of `parts` in
 * order (`buf` is scratch kept between batches, for the arrays as sent), later take the answer
 * (it waits for it unless PQisBusy says it has come). `lone`: the caller's connection is in
 * autocommit and the batch holds no directory entry; one such event with its district known
 * goes through one plain statement instead of core.journal_append (see s_one_sql).
 */
int sc__journal_send(PGconn *conn, const sc__jcols_t *const *parts, size_t nparts, sc__jcols_t *buf,
                     bool lone, char *err, size_t errlen);
int sc__journal_receive(PGconn *conn, sc__jentry_t *entries, size_t n, char *err, size_t errlen);
/* The published form of a journaled entry (new string, caller frees) or NULL. */
char *sc__journal_envelope(const sc__jentry_t *e);

/* ---- clock.c ---- */
/* The journal's tail in memory (tail.c), for the plugin runners. */
typedef struct sc__tev sc__tev_t;
void sc__tail_init(size_t cap);
void sc__tail_free(void);
/* After commit: a batch as journal_append numbered it, in the order it was offered. */
void sc__tail_append(const sc__jentry_t *e, size_t n);
/*
 * Up to `max` events after `after` whose type starts with one of `prefixes`, looking at
 * no more than `scan` ids; each taken event must be released. *upto: the last id the take
 * covered. Returns -1 when the tail does not hold the id after `after`; *lo is then where
 * it starts (INT64_MAX when empty), so a database read can stop before it. Any thread; a
 * long look lets appends in as it goes, and ends early where the tail went round meanwhile.
 */
int sc__tail_take(int64_t after, const char *const *prefixes, size_t max, size_t scan,
                  sc__tev_t **out, int64_t *upto, int64_t *lo);
const sc_event_t *sc__tev_event(const sc__tev_t *t, const char **data, size_t *data_len);
void sc__tev_release(sc__tev_t *t);

void sc__clock_init(bool manual, sc_time_t start);
bool sc__clock_manual(void);
sc_time_t sc__clock_now(void);
void sc__clock_set(sc_time_t t);
/* Monotonic milliseconds, for back-off and timeouts (never the manual clock). */
int64_t sc__mono_ms(void);
/* The same in microseconds. */
int64_t sc__mono_us(void);

/* ---- a runner's wait (runner.c) ---- */
/* What a runner's loop knows at its top, for how long it may sleep. */
typedef struct sc__runner_wait {
    bool connected; /* its connection is up */
    bool more;      /* its last batch was full, or the journal went on past its window */
    bool woken;     /* events of its types were journaled since its last batch */
    bool holding;   /* it holds a batch back for a busy intake */
    int64_t reconnect_at_ms, retry_at_ms, pace_until_ms; /* monotonic ms */
} sc__runner_wait_t;
/*
 * Milliseconds the loop may sleep before it has work: 0 at once, -1 until woken (or its tick:
 * the tick, and a holding runner's look every 20 ms, are the caller's). Any thread; pure.
 */
long sc__runner_wait_ms(const sc__runner_wait_t *w, int64_t now_ms);

/* ---- latency histograms (hist.c) ---- */
#define SC__HIST_BUCKETS (16 + 32 * 8) /* 0–15 µs one each, then 8 per power of two */
typedef struct sc__hist {
    atomic_uint_fast64_t n[SC__HIST_BUCKETS];
} sc__hist_t;
/* Counts one value (µs; negative counts as 0). Any thread. */
void sc__hist_add(sc__hist_t *h, int64_t us);
/*
 * New reference: {"count", "p50_ms", "p99_ms", "p999_ms" (a bucket's largest value; null
 * when empty), "buckets": [[largest µs, count], …] (the non-empty ones, ascending)}.
 */
json_t *sc__hist_json(const sc__hist_t *h);
/*
 * New reference: {"count", "p50_ms", "p99_ms", "p999_ms"} of buckets given as above ([[largest
 * µs, count], …], ascending), as sc__hist_json reports them. The bench calls it on the
 * difference of two replies.
 */
json_t *sc__hist_percentiles(const json_t *buckets);

/* ---- stats (ingest.c) ---- */
typedef struct sc__stats {
    atomic_uint_fast64_t received, acked, duplicates, batches, batched_events, unreachable_peers;
    atomic_uint_fast64_t refused[SC__E_COUNT];
    atomic_int_fast64_t head; /* highest journal number committed by this daemon */
    atomic_bool db_up;
    /* Until then (monotonic ms) intake counts as busy and plugins yield to it: set a little
     * ahead each time senders are seen queueing in front of intake (see ingest.c), so that a
     * burst that slackens between turns stays one burst. */
    atomic_int_fast64_t busy_until_ms;
    /* Each acked event, from its frame read off the socket to its ack handed to ZeroMQ; and
     * each batch, from its statement sent to the journal's answer read. */
    sc__hist_t in_daemon, journal;
} sc__stats_t;
extern sc__stats_t sc__stats;
void sc__stats_head(int64_t id);
bool sc__intake_busy(void);

/* ---- db.c ---- */
/* A session set up for the daemon (UTC, ISO dates, quiet notices). NULL with err on failure. */
PGconn *sc__db_connect(const char *conninfo, const char *who, char *err, size_t errlen);
/*
 * The same without blocking: a connection being made (PQconnectPoll goes on with it; NULL
 * when libpq is out of memory), and the monotonic ms by which it must be ready. Once
 * PQconnectPoll says PGRES_POLLING_OK, sc__db_session sets it up.
 */
PGconn *sc__db_connect_start(const char *conninfo, const char *who, int64_t *deadline_ms);
/* The session settings of every connection of the daemon; 0, or < 0 with err written. */
int sc__db_session(PGconn *conn, char *err, size_t errlen);
/* Runs a statement without parameters; 0, -EAGAIN or -EIO. */
int sc__db_exec(PGconn *conn, const char *sql);
/* A text[] literal of a JSON array of strings, each quoted and escaped (new string). */
char *sc__pg_text_array(const json_t *strings);
/* Doubling back-off between min and max. */
int64_t sc__backoff_next(int64_t current_ms, int64_t min_ms, int64_t max_ms);

/* ---- the daemon ---- */
struct sc__runner;
struct sc__ingest;

typedef struct sc__daemon {
    sc__config_t *cfg;
    sc__registry_t *reg;
    PGconn *conn; /* the main thread's: migrations, the manual clock */
    void *zctx;
    const char *conninfo;
    const char *timezone;
    sc__limits_t limits;
    struct sc__ingest *ingest;
    pthread_t publisher;
    struct sc__runner **runners;
    size_t nrunners;
    sc_time_t started_at;
} sc__daemon_t;

/* inproc endpoints between the daemon's threads */
#define SC__PUBLISH_PIPE "inproc://sc-publish"

/* ---- ingest.c: the ROUTER socket and the journal's connection, in one thread ---- */
int sc__ingest_start(sc__daemon_t *d, char *err, size_t errlen);
/* Stops intake, waits for what was taken to be journaled and acked, joins the thread. */
void sc__ingest_stop(sc__daemon_t *d);
/* Frees the emptied batch chunks kept for reuse, once nothing publishes any more. */
void sc__ingest_spare_free(void);

/* ---- publish.c ---- */
/* Binds the PUB socket and starts the publisher thread. */
int sc__publish_start(sc__daemon_t *d, char *err, size_t errlen);
void sc__publish_stop(sc__daemon_t *d);
/* A PUSH socket into the publisher, for the calling thread only. */
void *sc__publish_socket(sc__daemon_t *d);
/* Sends one journaled event to be published ([type][envelope]); takes ownership of json. */
void sc__publish_event(void *sock, const char *type, char *json);

/* ---- runner.c: one thread per plugin ---- */
int sc__runners_start(sc__daemon_t *d, char *err, size_t errlen);
void sc__runners_stop(sc__daemon_t *d);
/* Wakes every plugin thread: new events are in the journal. Any thread. */
void sc__runners_wake(sc__daemon_t *d);
/*
 * Wakes only the plugin threads subscribed to a type among the n journaled
 * entries; the others pass over them at their next tick. Any thread.
 */
void sc__runners_wake_for(sc__daemon_t *d, const sc__jentry_t *e, size_t n);
/* Control requests, from the main thread only. Replies are new references. */
json_t *sc__runners_list(sc__daemon_t *d);
json_t *sc__runner_query(sc__daemon_t *d, const char *plugin, const json_t *req);
/* Manual clock: moves time to `to`, ticking every plugin at every instant due on the way. */
int sc__runners_advance(sc__daemon_t *d, sc_time_t to, char *err, size_t errlen);
/* Hands each plugin its new config section (SIGHUP). */
void sc__runners_reload(sc__daemon_t *d, sc__registry_t *fresh);

/* ---- security.c ---- */
enum {
    SC__FORBID_SOURCE,
    SC__FORBID_REVOKED,
    SC__FORBID_GRANT,
    SC__FORBID_PLUGIN_ONLY,
    SC__FORBID_COUNT
};
extern atomic_uint_fast64_t sc__forbidden_by[SC__FORBID_COUNT];
const char *sc__forbid_reason(int r);
/* Loads the sources and starts the ZAP handler when CURVE is on (main thread, before ingest). */
int sc__security_start(sc__daemon_t *d, char *err, size_t errlen);
/* Re-reads core.sources and the schools' districts (main thread). */
int sc__security_reload(sc__daemon_t *d);
/* Applies ingest's authentication settings to the ROUTER before it binds. */
int sc__security_setup(sc__daemon_t *d, void *router, char *err, size_t errlen);
/* The same for the PUB socket (publish.curve). */
int sc__security_publish(sc__daemon_t *d, void *pub, char *err, size_t errlen);
bool sc__security_curve(void);
/* The ingest socket's CURVE public key (Z85), or NULL without CURVE. */
const char *sc__security_public_key(void);
/* Checks an event against its connection's source and grants: 0, or -EPERM with detail. */
int sc__security_check(const char *user, const sc_event_t *ev, char *detail, size_t dlen);
/* The ingest thread tells of a school journaled with its district (grants by district). */
void sc__security_school(const char *school, const char *district);
json_t *sc__security_control(sc__daemon_t *d, const char *cmd, const json_t *req);

/* ---- control.c / main.c ---- */
json_t *sc__control_handle(sc__daemon_t *d, const json_t *req);
/* Records the manual clock's time so a restart resumes there (clock.c). */
void sc__clock_save(sc__daemon_t *d);

/* ---- directory.c ---- */
size_t sc__directory_ntypes(void);
const struct sc_type *sc__directory_type(size_t i);
/* Look-ups behind the host table, through the caller's connection. New references or NULL. */
json_t *sc__directory_people(PGconn *conn, const char *school, const char *district,
                             const char *role);
json_t *sc__directory_school(PGconn *conn, const char *school, const char *default_tz);
json_t *sc__directory_person(PGconn *conn, const char *person);
json_t *sc__directory_class(PGconn *conn, const char *school, const char *klass);
json_t *sc__directory_district_schools(PGconn *conn, const char *district, const char *default_tz);
/*
 * What a runner may keep of the directory between transactions. The ingest thread calls
 * sc__directory_sending() before it sends a batch holding directory.* events and
 * sc__directory_sent() once that batch is answered. sc__directory_epoch() is 0 while such a
 * batch is in flight (keep nothing read now), else a number that moved since any such batch
 * was sent: what was read under another number may be out of date. Any thread.
 */
void sc__directory_sending(void);
void sc__directory_sent(void);
uint64_t sc__directory_epoch(void);

/* ---- migrate.c ---- */
/* Takes (lock=true, also creating core.migrations) or releases the migration lock. */
int sc__migrate_lock(PGconn *conn, bool lock, char *err, size_t errlen);
/* Applies the pending migrations of one component in order; refuses a changed one. */
int sc__migrate(PGconn *conn, const char *component, const struct sc_migration *migrations,
                char *err, size_t errlen);
extern const struct sc_migration sc__core_migrations[];

#endif
