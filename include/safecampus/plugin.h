/* safecampus plugin ABI: what a plugin exports and what the host gives it. */
#ifndef SAFECAMPUS_PLUGIN_H
#define SAFECAMPUS_PLUGIN_H

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Version of this contract. Bumped when a struct below changes in a way an
 * older plugin cannot survive; the structs otherwise only grow at the end, and
 * each carries its size so either side can tell what the other knows.
 */
#define SC_PLUGIN_ABI 1

/* Name of the one symbol a plugin exports. */
#define SC_PLUGIN_ENTRY "sc_plugin_entry"

/* Time: microseconds since the Unix epoch, UTC. */
typedef int64_t sc_time_t;
#define SC_TIME_NEVER INT64_MAX
#define SC_USEC_PER_SEC INT64_C(1000000)

/* Opaque per-plugin context handed to every callback. */
typedef struct sc_ctx sc_ctx_t;

/* Log levels: syslog priorities. */
enum sc_log_level {
    SC_LOG_ERR = 3,
    SC_LOG_WARNING = 4,
    SC_LOG_NOTICE = 5,
    SC_LOG_INFO = 6,
    SC_LOG_DEBUG = 7,
};

/*
 * One journaled event as a plugin sees it. Every pointer is borrowed: valid
 * until the callback that received it returns.
 */
typedef struct sc_event {
    int64_t id;            /* journal number (core.events.id); 0 before journaling */
    const char *type;      /* "hazard.reported" */
    const char *school;    /* school code, or NULL for district-scoped events */
    const char *district;  /* the school's district (filled by the core), or NULL */
    const char *source;    /* sending system, or the emitting plugin's name */
    const char *source_id; /* sender's idempotency key, or NULL */
    const char *actor;     /* person code, or NULL */
    sc_time_t occurred_at;
    sc_time_t received_at;
    const json_t *data; /* always an object */
} sc_event_t;

/*
 * A validator for one owned type. Pure and thread-safe: the ingest thread
 * calls it before the event is accepted, with the envelope already checked.
 * Returns 0 when `ev->data` is acceptable; otherwise writes a short detail
 * naming the field and the rule ("data.risk: must be one of general, major")
 * into `detail` and returns -EINVAL.
 */
typedef int (*sc_validate_fn)(const sc_event_t *ev, char *detail, size_t detail_len);

/* Flags of an owned type. */
enum sc_type_flags {
    SC_TYPE_EMITTED = 1u << 0,  /* only the plugin raises it: refused from senders */
    SC_TYPE_DISTRICT = 1u << 1, /* may be addressed to a district instead of a school */
};

/* One type a plugin owns. Arrays of these end with an entry whose name is NULL. */
struct sc_type {
    const char *name;        /* exact type, "hazard.reported" */
    unsigned flags;          /* enum sc_type_flags */
    sc_validate_fn validate; /* NULL: any data object is accepted */
};

/* Config key kinds. */
enum sc_config_kind {
    SC_CFG_BOOL = 1,
    SC_CFG_INT,
    SC_CFG_FLOAT,
    SC_CFG_STRING,
    SC_CFG_DURATION, /* an integer of seconds, or a string "90s", "15m", "2h", "7d" */
    SC_CFG_LIST,     /* a libconfig list or array; checked by the plugin in init */
    SC_CFG_GROUP,    /* a libconfig group; checked by the plugin in init */
};

/*
 * One key of a plugin's config section. The core refuses keys not in the
 * table and values of the wrong kind, and fills defaults, so the plugin reads
 * a complete JSON object. Arrays end with an entry whose name is NULL.
 * `def` is the default written as JSON ("7", "\"08:00\"", "true", "[]").
 */
struct sc_config_key {
    const char *name;
    enum sc_config_kind kind;
    const char *def;
    const char *help;
};

/* A numbered migration, applied once, in order, recorded with a checksum. */
struct sc_migration {
    int version;      /* 1, 2, 3 … strictly increasing */
    const char *name; /* "001_hazards.sql" */
    const char *sql;
};

/*
 * An event a plugin raises. `type` must be one the plugin owns. `data` is
 * borrowed: the host copies what it keeps. `occurred_at` 0 means now.
 * `id`, when given, is an idempotency key under the plugin's name as source.
 */
typedef struct sc_emit {
    const char *type;
    const char *school;
    const char *district;
    const char *id;
    const char *actor;
    sc_time_t occurred_at;
    const json_t *data;
} sc_emit_t;

/*
 * The host function table. Plugins never link against the daemon; they call
 * through this table (or the inline wrappers below). It only grows at the end.
 * Every function may be called only from the thread running the callback.
 */
struct sc_host {
    uint32_t abi;
    uint32_t size;
    void (*vlog)(sc_ctx_t *ctx, int level, const char *fmt, va_list ap);
    int (*log_enabled)(sc_ctx_t *ctx, int level);
    /* The daemon's clock: system time, or the manual clock in tests. */
    sc_time_t (*now)(sc_ctx_t *ctx);
    /* The plugin's own connection, inside the transaction the core opened. */
    PGconn *(*db)(sc_ctx_t *ctx);
    /* The plugin's config section with defaults filled in (borrowed). */
    const json_t *(*config)(sc_ctx_t *ctx);
    /*
     * Raise an event. It becomes durable with the current transaction and is
     * journaled (and published) only if that commits. Returns 0 or -errno.
     */
    int (*emit)(sc_ctx_t *ctx, const sc_emit_t *ev);
    /*
     * Directory look-ups, read through the plugin's connection.
     * people_with_role: people holding `role` at `school` (if `school` is a
     * school code) or at `district`; either may be NULL. Returns a new
     * reference to an array of {"person","name","roles":[],"contacts":{}}
     * objects (possibly empty), or NULL on a database error.
     */
    json_t *(*people_with_role)(sc_ctx_t *ctx, const char *school, const char *district,
                                const char *role);
    /*
     * A school's directory entry: new reference to {"school","name","district",
     * "timezone"} (timezone defaulted from the daemon's config), or NULL when
     * the school is unknown or on error.
     */
    json_t *(*school)(sc_ctx_t *ctx, const char *school);
    /* One person: new reference to {"person","name","roles","contacts","school","district"} or
     * NULL. */
    json_t *(*person)(sc_ctx_t *ctx, const char *person);
    /* The daemon-wide default time zone ("Asia/Shanghai"). */
    const char *(*default_timezone)(sc_ctx_t *ctx);
    /* A class of a school: new reference to {"class","grade","head_teacher"} or NULL. */
    json_t *(*school_class)(sc_ctx_t *ctx, const char *school, const char *klass);
    /* The schools of a district: new reference to an array of school objects, or NULL on error. */
    json_t *(*district_schools)(sc_ctx_t *ctx, const char *district);
    /*
     * From init only, for a plugin whose config decides what it acts on: hand
     * handle() only events whose type starts with one of `prefixes`
     * (NULL-terminated, copied), as far as they lie within the plugin's
     * `subscribe` list, which stays the outer bound (a prefix outside it is
     * dropped, a broader one cut to the parts inside it). The rest is never
     * read for the plugin. In force once init returns, from the cursor on; each
     * init (again after a reload or a reconnect) asks afresh, and one that asks
     * nothing is handed its whole list. Returns 0 or -errno.
     */
    int (*subscribe)(sc_ctx_t *ctx, const char *const *prefixes);
};

/* The first member of every context: how a plugin reaches its host. */
struct sc_ctx {
    const struct sc_host *host;
};

/*
 * What a plugin's entry returns. It starts with abi and size so the loader
 * can refuse a mismatch before touching anything else.
 *
 * Callbacks run on the plugin's own thread:
 *  - init: read config, prepare statements, allocate state. Runs outside any
 *    transaction after migrations. Returns 0 or -errno (the plugin is not started).
 *  - handle: apply one event. Runs inside the transaction the core opened;
 *    the core commits it with the plugin's cursor and the events it emitted.
 *    Returns 0; -EAGAIN for a transient failure (retried with back-off); any
 *    other negative errno for a permanent one (retried a configured number of
 *    times, then dead-lettered). An event the plugin can apply only as a
 *    refusal returns 0 after emitting "<domain>.rejected".
 *  - tick: do what is due at `now` (every deadline <= now, however far the
 *    clock jumped) inside a transaction, and set *next to the next instant
 *    anything is due (SC_TIME_NEVER if none). Same return codes as handle.
 *  - query: answer a read request {"cmd":"query","what":…} with a new
 *    reference in *reply, inside a read-only transaction. Returns 0, or
 *    -EINVAL with *reply an {"error":…} object for a bad request.
 *  - fini: free state. Called once, also when init failed part-way.
 *  - end_batch (optional; read only when size covers it, so older plugins
 *    load unchanged): the core hands handle() a batch of events in one
 *    transaction; a plugin may defer writes and send them together here.
 *    Called after the batch's last handle() with keep = true, still inside
 *    the transaction and before the core journals what was emitted and
 *    commits: write what was deferred, return as handle() does (on failure
 *    the core splits the batch to find the event at fault). Called with
 *    keep = false when the batch is rolled back: drop what was deferred.
 *    Either way nothing deferred may outlive the call.
 */
struct sc_plugin {
    uint32_t abi;  /* SC_PLUGIN_ABI */
    uint32_t size; /* sizeof(struct sc_plugin) */
    const char *name;
    const char *version;
    const char *description;
    const char *const *subscribe; /* type prefixes, NULL-terminated */
    const struct sc_type *types;
    const struct sc_config_key *config;
    const struct sc_migration *migrations; /* ends with version 0; may be NULL */
    int (*init)(sc_ctx_t *ctx, void **state);
    int (*handle)(sc_ctx_t *ctx, void *state, const sc_event_t *ev);
    int (*tick)(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next);
    int (*query)(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply);
    void (*fini)(sc_ctx_t *ctx, void *state);
    int (*end_batch)(sc_ctx_t *ctx, void *state, bool keep);
};

/* Whether a plugin's struct reaches the field `f` (fields only grow at the end). */
#define SC_PLUGIN_HAS(p, f) ((p)->size >= offsetof(struct sc_plugin, f) + sizeof((p)->f))

typedef const struct sc_plugin *(*sc_plugin_entry_fn)(void);

#define SC_EXPORT __attribute__((visibility("default")))

/* Declares a plugin's entry: SC_PLUGIN_DEFINE(hazard_plugin) after the struct. */
#define SC_PLUGIN_DEFINE(var)                                                                      \
    SC_EXPORT const struct sc_plugin *sc_plugin_entry(void);                                       \
    SC_EXPORT const struct sc_plugin *sc_plugin_entry(void)                                        \
    {                                                                                              \
        return &(var);                                                                             \
    }

/* Inline wrappers: the names plugins use. */
static inline sc_time_t sc_now(sc_ctx_t *ctx)
{
    return ctx->host->now(ctx);
}
static inline PGconn *sc_db(sc_ctx_t *ctx)
{
    return ctx->host->db(ctx);
}
static inline const json_t *sc_config(sc_ctx_t *ctx)
{
    return ctx->host->config(ctx);
}
static inline int sc_emit(sc_ctx_t *ctx, const sc_emit_t *ev)
{
    return ctx->host->emit(ctx, ev);
}
/* sc_host.subscribe; -ENOSYS from a daemon without it (the plugin's own list then holds). */
static inline int sc_subscribe(sc_ctx_t *ctx, const char *const *prefixes)
{
    if (ctx->host->size < offsetof(struct sc_host, subscribe) + sizeof ctx->host->subscribe)
        return -ENOSYS;
    return ctx->host->subscribe(ctx, prefixes);
}

__attribute__((format(printf, 3, 4))) static inline void sc_log(sc_ctx_t *ctx, int level,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctx->host->vlog(ctx, level, fmt, ap);
    va_end(ap);
}

/* Level checked before the arguments are evaluated; the plugin name is prefixed by the host. */
#define SC_LOG(ctx, level, ...)                                                                    \
    do {                                                                                           \
        if ((ctx)->host->log_enabled((ctx), (level)))                                              \
            sc_log((ctx), (level), __VA_ARGS__);                                                   \
    } while (0)
#define SC_LOG_ERR(ctx, ...) SC_LOG(ctx, SC_LOG_ERR, __VA_ARGS__)
#define SC_LOG_WARN(ctx, ...) SC_LOG(ctx, SC_LOG_WARNING, __VA_ARGS__)
#define SC_LOG_NOTICE(ctx, ...) SC_LOG(ctx, SC_LOG_NOTICE, __VA_ARGS__)
#define SC_LOG_INFO(ctx, ...) SC_LOG(ctx, SC_LOG_INFO, __VA_ARGS__)
#define SC_LOG_DEBUG(ctx, ...) SC_LOG(ctx, SC_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
