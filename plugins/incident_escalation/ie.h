/* incident_escalation internals shared between the plugin's source files (not exported). */
#ifndef IE_H
#define IE_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdbool.h>

/* The plugin's state: its config, read once in init. */
typedef struct ie_state {
    json_t *policies;     /* normalised policies in matching order (config first, then built-ins) */
    json_t *channels;     /* channel preference order: "webhook", "email", "sms" */
    bool channel_all;     /* one notification per available channel, not just the first */
    bool notify_resolved; /* tell everyone told when an escalation is resolved */
    int64_t group_window; /* seconds */
    int64_t drill_max;    /* seconds a started drill inhibits alarms without drill.ended */
    int64_t silence_max;  /* longest silence accepted, seconds */
    char fire_severity[4];
} ie_state_t;

/* ---- policy.c: policies, matchers, subjects ---- */

/*
 * Checks a matcher (an object, or an array of objects when `allow_array`) as written in config
 * or in silence.created. Pure. Returns 0 or -EINVAL with "<prefix>…: rule" in detail.
 */
int ie_matcher_check(const json_t *m, const char *prefix, bool allow_array, char *detail,
                     size_t dlen);

/*
 * Builds the list of policies from the config section: its `policies`, then (unless
 * default_policies is false) the built-in ones. Durations become seconds, "levels":"default"/
 * "grave" become the configured chains. Returns 0 with a new reference in *out, or -EINVAL with
 * the reason in err.
 */
int ie_policies_load(const json_t *cfg, json_t **out, char *err, size_t errlen);

/* True when facts satisfy the matcher (object: all keys; array: any element). */
bool ie_match(const json_t *matcher, const json_t *facts);

/* The first policy whose match accepts facts, or NULL (borrowed from st). */
const json_t *ie_policy_for(const ie_state_t *st, const json_t *facts);

/*
 * The subject of an alert under `policy`: the values of its subject fields in `data`, joined
 * by "/" (absent ones skipped). Writes into buf (always terminated).
 */
void ie_subject(const json_t *policy, const json_t *data, char *buf, size_t len);

/* ---- db.c: small helpers ---- */

/* Runs a parameterised statement; on failure logs it and returns NULL with *rc set. */
PGresult *ie_sql(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc);
/* Like ie_sql for statements whose result is not needed. Returns 0 or -errno. */
int ie_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params);
/* Appends one timeline entry; `detail` is borrowed (NULL: {}). Returns 0 or -errno. */
int ie_timeline(sc_ctx_t *ctx, const char *code, sc_time_t at, const char *what, int level,
                const char *person, const json_t *detail, int64_t event);
/*
 * Loads one escalation as a JSON object (new reference in *out; NULL when it does not exist).
 * Returns 0 or -errno.
 */
int ie_load(sc_ctx_t *ctx, const char *code, json_t **out);
/* Emits <domain>.rejected as incident.rejected {event, incident?, reason}. Returns 0 or -errno. */
int ie_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *key, const char *value,
              const char *reason);
/* The school's time zone (the daemon's default when unknown) into buf. */
void ie_school_tz(sc_ctx_t *ctx, const char *school, char *buf, size_t len);

/* ---- escalate.c: the machinery ---- */

/* What opens an escalation. Every pointer is borrowed. */
typedef struct ie_open {
    const char *code;
    const char *sort;   /* "incident" or "alert" */
    const char *origin; /* the event type that opened it */
    const json_t *facts;
    const json_t *policy;
    const char *subject;   /* NULL for none */
    const char *group_key; /* NULL for none */
    const char *location;  /* NULL: data.location */
    const char *summary;   /* NULL: data.summary */
    const char *reason;    /* why level 1 is told */
    const sc_event_t *ev;
} ie_open_t;

/*
 * Opens an escalation (row, timeline, level 1 and the policy's immediate levels, report
 * deadline). Returns 0 or -errno.
 */
int ie_open(sc_ctx_t *ctx, ie_state_t *st, const ie_open_t *o);

/*
 * Joins an event into an open escalation with the same group key when the grouping rules say
 * so: sets *joined. Returns 0 or -errno.
 */
int ie_group(sc_ctx_t *ctx, ie_state_t *st, const char *group_key, const sc_event_t *ev,
             bool *joined);

/*
 * Tells `level` of an escalation for the first time: levels row, targets, incident.escalated,
 * notification.requested per target and channel; tells the level above at once when nobody
 * at this level can be reached. No-op when the level was told already or does not exist.
 */
int ie_tell(sc_ctx_t *ctx, ie_state_t *st, const char *code, int level, sc_time_t at,
            const char *cause, const char *reason, int64_t event);

/* incident.acknowledged, incident.resolved, incident.updated, incident.report.submitted. */
int ie_on_ack(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
int ie_on_resolved(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
int ie_on_updated(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
int ie_on_report(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
int ie_on_notification_failed(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);

/*
 * Resolves an escalation (no authority check): status, timers, timeline, resolved
 * notifications. Returns 0 or -errno.
 */
int ie_resolve(sc_ctx_t *ctx, ie_state_t *st, const char *code, sc_time_t at, const char *by,
               const char *summary, int64_t event);

/* Does everything due at or before now; *next gets the next due instant. */
int ie_tick(sc_ctx_t *ctx, ie_state_t *st, sc_time_t now, sc_time_t *next);

/* ---- intake.c: events that open, group, inhibit or silence escalations ---- */

/* incident.reported: opens an incident escalation. */
int ie_on_reported(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
/* fire.alarm: an incident unless inhibited by a drill or a silence; faults become alerts. */
int ie_on_fire(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
/* drill.scheduled / started / ended / cancelled from the ledger plugin. */
int ie_on_drill(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
/* silence.created and silence.cancelled. */
int ie_on_silence(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);
/* Any other event: resolves alerts its type resolves, then becomes an alert if a policy says so. */
int ie_on_other(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev);

/* ---- query.c ---- */
int ie_query(sc_ctx_t *ctx, ie_state_t *st, const json_t *req, json_t **reply);

#endif
