/*
 * libFuzzer target: control requests, read as the main loop reads them
 * (json_loadb without flags) and answered by sc__control_handle, against a
 * daemon with no plugin runners, an empty registry, the manual clock, and no
 * database:
 *
 *  - status, plugins, stats: answered from the daemon struct and counters;
 *  - query: the request is checked, then "no plugin of that name is running"
 *    (with no runners nothing is forwarded to a plugin thread);
 *  - clock.set / clock.advance: parsed and applied; advancing with no runners
 *    returns at once; sc__clock_save then tries d->conninfo, which names a
 *    socket folder that does not exist, so it fails at once (no network, no
 *    timeout) and the reply is still sent, as in the daemon;
 *  - source.*: the request is checked (source code, schools/districts lists);
 *    with d->conn NULL the statement fails and the reply is a database error.
 *
 * The manual clock is reset before each input, so an input's reply never
 * depends on the inputs before it.
 *
 * Fails on crashes, sanitizer reports and leaks, and on a reply the main loop
 * could not send: NULL (main.c would strlen(NULL)), not an object, without
 * "ok", or an error without "error" and "detail".
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sc__daemon_t s_d;
static sc_time_t s_start;
#define S_START "2026-06-15T07:00:00+08:00"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sc__log_level = SC_LOG_ERR - 1;
    sc__config_t *cfg = NULL;
    fz_load("clock: { mode = \"manual\"; start = \"" S_START "\"; sync_timeout = 5; };\n"
            "database: { conninfo = \"host=/nonexistent/safecampus-fuzz dbname=none\"; };",
            &cfg, NULL);
    if (sc_time_parse(S_START, &s_start) < 0)
        abort();
    s_d.cfg = cfg;
    s_d.reg = calloc(1, sizeof *s_d.reg); /* no plugins, no types */
    s_d.conn = NULL;
    s_d.conninfo = sc__cfg_str(cfg->core, "database", "conninfo");
    s_d.timezone = sc__cfg_str(cfg->core, NULL, "timezone");
    s_d.limits = (sc__limits_t){.max_bytes = 65536, .max_depth = 32};
    s_d.runners = NULL;
    s_d.nrunners = 0;
    s_d.started_at = s_start;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *req = json_loadb((const char *)data, size, 0, &jerr);
    if (!req)
        return 0; /* the main loop answers malformed_json itself */
    sc__clock_init(true, s_start);

    json_t *reply = sc__control_handle(&s_d, req);
    if (!reply)
        fz_fail("control: no reply (the main loop would call strlen(NULL))");
    if (!json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok")))
        fz_fail("control: the reply is not an object with \"ok\"");
    if (json_is_false(json_object_get(reply, "ok")) &&
        (!json_is_string(json_object_get(reply, "error")) ||
         !json_is_string(json_object_get(reply, "detail"))))
        fz_fail("control: an error reply without \"error\" and \"detail\"");
    char *text = json_dumps(reply, JSON_COMPACT);
    if (!text)
        fz_fail("control: the reply cannot be serialised");
    free(text);
    if (s_d.conn)
        fz_fail("control: connected to a database that does not exist");
    json_decref(reply);
    json_decref(req);
    return 0;
}
