/* Control requests (the REP socket safecampusctl talks to), answered on the main thread. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef SC_VERSION
#define SC_VERSION "0.1.0"
#endif

static json_t *s_error(const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", code, "detail", sc_utf8_clean(detail));
}

static json_t *s_now_reply(void)
{
    char now[SC_TIME_LEN];
    return json_pack("{s:b, s:s}", "ok", 1, "now", sc_time_format(sc__clock_now(), now));
}

static json_t *s_status(sc__daemon_t *d)
{
    char now[SC_TIME_LEN], started[SC_TIME_LEN];
    json_t *status = json_pack(
        "{s:b, s:s, s:i, s:s, s:s, s:{s:s, s:s}, s:s, s:I, s:i}", "ok", 1, "version", SC_VERSION,
        "pid", (int)getpid(), "config", d->cfg->path, "started_at",
        sc_time_format(d->started_at, started), "clock", "mode",
        sc__clock_manual() ? "manual" : "system", "now", sc_time_format(sc__clock_now(), now),
        "database", atomic_load(&sc__stats.db_up) ? "up" : "down", "journal_head",
        (json_int_t)atomic_load(&sc__stats.head), "plugins", (int)d->nrunners);
    if (sc__security_public_key())
        json_object_set_new(status, "ingest_public_key", json_string(sc__security_public_key()));
    return status;
}

static json_t *s_stats(void)
{
    json_t *refused = json_object();
    for (int e = SC__E_MALFORMED; e < SC__E_COUNT; e++)
        json_object_set_new(refused, sc__error_code(e),
                            json_integer((json_int_t)atomic_load(&sc__stats.refused[e])));
    json_t *forbidden = json_object();
    for (int r = 0; r < SC__FORBID_COUNT; r++)
        json_object_set_new(forbidden, sc__forbid_reason(r),
                            json_integer((json_int_t)atomic_load(&sc__forbidden_by[r])));
    uint64_t batches = atomic_load(&sc__stats.batches);
    uint64_t events = atomic_load(&sc__stats.batched_events);
    return json_pack("{s:b, s:I, s:I, s:I, s:o, s:o, s:I, s:f, s:I, s:I, s:b, s:{s:o, s:o}}", "ok",
                     1, "received", (json_int_t)atomic_load(&sc__stats.received), "acked",
                     (json_int_t)atomic_load(&sc__stats.acked), "duplicates",
                     (json_int_t)atomic_load(&sc__stats.duplicates), "refused", refused,
                     "forbidden_by", forbidden, "batches", (json_int_t)batches, "avg_batch",
                     batches ? (double)events / (double)batches : 0.0, "journal_head",
                     (json_int_t)atomic_load(&sc__stats.head), "unreachable_peers",
                     (json_int_t)atomic_load(&sc__stats.unreachable_peers), "intake_busy",
                     sc__intake_busy(), "latency", "in_daemon", sc__hist_json(&sc__stats.in_daemon),
                     "journal", sc__hist_json(&sc__stats.journal));
}

static json_t *s_clock(sc__daemon_t *d, const char *cmd, const json_t *req)
{
    if (!sc__clock_manual())
        return s_error("invalid_request", "%s: only when clock.mode = \"manual\"", cmd);
    sc_time_t to;
    if (strcmp(cmd, "clock.set") == 0) {
        const char *t = sc_json_str(req, "time");
        if (!t || sc_time_parse(t, &to) < 0)
            return s_error("invalid_request", "time: expected an RFC 3339 time");
    } else {
        const json_t *s = json_object_get(req, "seconds");
        if (!json_is_number(s) || json_number_value(s) < 0 ||
            json_number_value(s) > 10 * 365 * 86400.0)
            return s_error("invalid_request", "seconds: expected a number from 0 to 10 years");
        to = sc__clock_now() + (sc_time_t)(json_number_value(s) * SC_USEC_PER_SEC);
    }
    char err[256];
    if (sc__runners_advance(d, to, err, sizeof err) < 0)
        return s_error("timeout", "%s", err);
    sc__clock_save(d);
    return s_now_reply();
}

json_t *sc__control_handle(sc__daemon_t *d, const json_t *req)
{
    const char *cmd = sc_json_str(req, "cmd");
    if (!json_is_object(req) || !cmd)
        return s_error("invalid_request", "cmd: required");
    if (strcmp(cmd, "status") == 0)
        return s_status(d);
    if (strcmp(cmd, "plugins") == 0)
        return json_pack("{s:b, s:o}", "ok", 1, "plugins", sc__runners_list(d));
    if (strcmp(cmd, "stats") == 0)
        return s_stats();
    if (strcmp(cmd, "query") == 0) {
        const char *plugin = sc_json_str(req, "plugin");
        if (!plugin)
            return s_error("invalid_request", "plugin: required");
        return sc__runner_query(d, plugin, req);
    }
    if (strcmp(cmd, "clock.set") == 0 || strcmp(cmd, "clock.advance") == 0)
        return s_clock(d, cmd, req);
    if (strncmp(cmd, "source.", 7) == 0)
        return sc__security_control(d, cmd, req);
    return s_error("unknown_command",
                   "cmd: must be one of status, plugins, stats, query, clock.set, clock.advance, "
                   "source.add, source.list, source.revoke, source.grant, source.ungrant");
}
