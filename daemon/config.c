/* The daemon's config file: libconfig read into JSON, every key checked against a table. */
#include "internal.h"

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The core's keys, group by group: the only place they are declared. */
static const struct sc_config_key s_top_keys[] = {
    {"timezone", SC_CFG_STRING, "\"Asia/Shanghai\"",
     "default time zone for schools that name none"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_database_keys[] = {
    {"conninfo", SC_CFG_STRING, "\"host=/run/postgresql dbname=safecampus\"",
     "libpq connection string of the daemon's role"},
    {"migrate_conninfo", SC_CFG_STRING, "null",
     "connection of the schema owner that applies migrations (default: conninfo)"},
    {"reconnect_max", SC_CFG_DURATION, "30", "longest wait between reconnection attempts"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_ingest_keys[] = {
    {"endpoint", SC_CFG_STRING, "\"tcp://127.0.0.1:7600\"", "ROUTER socket for events"},
    {"max_bytes", SC_CFG_INT, "65536", "largest frame accepted"},
    {"max_depth", SC_CFG_INT, "32", "deepest JSON nesting accepted"},
    {"batch_max", SC_CFG_INT, "4096", "most events journaled in one transaction"},
    {"queue_max", SC_CFG_INT, "16384", "events waiting for the journal before intake pauses"},
    {"busy", SC_CFG_INT, "1024",
     "messages waiting at the socket in one turn of intake (at most 1024 are read in one) at "
     "which it is busy and plugins yield (0: never); a full queue_max is busy too"},
    {"spin_us", SC_CFG_INT, "300",
     "microseconds the ingest thread waits awake for the answer to a batch of a few events "
     "before it sleeps (0: it sleeps at once)"},
    {"curve", SC_CFG_BOOL, "false", "require CURVE authentication of senders"},
    {"secret_key_file", SC_CFG_STRING, "null", "file holding the daemon's Z85 CURVE secret key"},
    {"insecure", SC_CFG_BOOL, "false", "allow a non-loopback endpoint without CURVE"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_publish_keys[] = {
    {"endpoint", SC_CFG_STRING, "\"tcp://127.0.0.1:7601\"", "PUB socket for journaled events"},
    {"hwm", SC_CFG_INT, "100000", "messages queued per subscriber before it misses some"},
    {"curve", SC_CFG_BOOL, "false", "require CURVE-authenticated subscribers"},
    {"secret_key_file", SC_CFG_STRING, "null",
     "the publisher's Z85 secret key (default: ingest's)"},
    {"subscribers", SC_CFG_LIST, "[]", "Z85 public keys of the subscribers allowed in"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_control_keys[] = {
    {"endpoint", SC_CFG_STRING, "\"ipc:///run/safecampus/control\"",
     "REP socket for safecampusctl"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_clock_keys[] = {
    {"mode", SC_CFG_STRING, "\"system\"", "\"system\", or \"manual\" (time moves by control only)"},
    {"start", SC_CFG_STRING, "null", "manual mode: the time to start at (RFC 3339)"},
    {"tick_interval", SC_CFG_DURATION, "1", "system mode: longest time between plugin ticks"},
    {"sync_timeout", SC_CFG_DURATION, "60", "manual mode: longest wait for plugins to catch up"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_plugins_keys[] = {
    {"dir", SC_CFG_STRING, "\"build/plugins\"", "folder of plugin .so files"},
    {"load", SC_CFG_LIST, "null", "plugins to load (absent: every plugin in dir)"},
    {"optional", SC_CFG_LIST, "[]", "plugins the daemon may start without if they fail to load"},
    {"batch", SC_CFG_INT, "256", "most events a plugin handles in one transaction"},
    {"pace", SC_CFG_INT, "50",
     "milliseconds a plugin waits after a batch that emptied the journal before its next, so "
     "events arriving one by one share a transaction (0: each at once; manual clock: 0)"},
    {"yield", SC_CFG_INT, "300",
     "while intake is busy, milliseconds a plugin leaves between its batches (0: no yielding)"},
    {"tail", SC_CFG_INT, "65536",
     "events kept in memory after their commit, for plugins to take without reading them back "
     "from the database (0: plugins always read the database)"},
    {"attempts", SC_CFG_INT, "5", "tries of an event that fails permanently before dead-lettering"},
    {"backoff_min", SC_CFG_INT, "100", "first retry delay, milliseconds"},
    {"backoff_max", SC_CFG_INT, "30000", "longest retry delay, milliseconds"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_config_key s_log_keys[] = {
    {"level", SC_CFG_STRING, "\"info\"", "err, warning, notice, info or debug"},
    {NULL, 0, NULL, NULL},
};

static const struct {
    const char *name;
    const struct sc_config_key *keys;
} s_groups[] = {
    {"database", s_database_keys}, {"ingest", s_ingest_keys}, {"publish", s_publish_keys},
    {"control", s_control_keys},   {"clock", s_clock_keys},   {"plugins", s_plugins_keys},
    {"log", s_log_keys},
};

static json_t *s_to_json(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        return json_integer(config_setting_get_int(s));
    case CONFIG_TYPE_INT64:
        return json_integer(config_setting_get_int64(s));
    case CONFIG_TYPE_FLOAT:
        return json_real(config_setting_get_float(s));
    case CONFIG_TYPE_STRING:
        return json_string(config_setting_get_string(s));
    case CONFIG_TYPE_BOOL:
        return json_boolean(config_setting_get_bool(s));
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: {
        json_t *a = json_array();
        for (int i = 0; i < config_setting_length(s); i++)
            json_array_append_new(a, s_to_json(config_setting_get_elem(s, (unsigned)i)));
        return a;
    }
    case CONFIG_TYPE_GROUP: {
        json_t *o = json_object();
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
            json_object_set_new(o, config_setting_name(c), s_to_json(c));
        }
        return o;
    }
    default:
        return json_null();
    }
}

static const struct sc_config_key *s_group_keys(const char *name)
{
    for (size_t i = 0; i < sizeof s_groups / sizeof s_groups[0]; i++)
        if (strcmp(s_groups[i].name, name) == 0)
            return s_groups[i].keys;
    return NULL;
}

bool sc__config_is_core_group(const char *name)
{
    return s_group_keys(name) != NULL;
}

/* Checks the core's part of `doc`; fills cfg->core. */
static int s_check_core(sc__config_t *cfg, json_t *doc, char *err, size_t errlen)
{
    json_t *top = json_object();
    json_t *core = json_object();
    const char *key;
    json_t *v;
    int rc = -EINVAL;

    json_object_foreach(doc, key, v)
    {
        if (json_is_object(v))
            continue; /* a group: the core's or a plugin's section */
        json_object_set(top, key, v);
    }
    json_t *filled = NULL;
    if (sc__pconfig_fill(s_top_keys, NULL, top, &filled, err, errlen) < 0)
        goto out;
    json_object_update(core, filled);
    json_decref(filled);

    for (size_t i = 0; i < sizeof s_groups / sizeof s_groups[0]; i++) {
        json_t *given = json_object_get(doc, s_groups[i].name);
        json_t *empty = json_object();
        rc = sc__pconfig_fill(s_groups[i].keys, s_groups[i].name, given ? given : empty, &filled,
                              err, errlen);
        json_decref(empty);
        if (rc < 0)
            goto out;
        json_object_set_new(core, s_groups[i].name, filled);
    }
    rc = -EINVAL;

    const char *mode = json_string_value(json_object_get(json_object_get(core, "clock"), "mode"));
    if (strcmp(mode, "system") != 0 && strcmp(mode, "manual") != 0) {
        snprintf(err, errlen, "clock.mode: must be one of system, manual");
        goto out;
    }
    const char *start = sc__cfg_str(core, "clock", "start");
    sc_time_t t;
    if (start && sc_time_parse(start, &t) < 0) {
        snprintf(err, errlen, "clock.start: expected an RFC 3339 time");
        goto out;
    }
    if (sc__log_level_parse(sc__cfg_str(core, "log", "level")) < 0) {
        snprintf(err, errlen, "log.level: must be one of err, warning, notice, info, debug");
        goto out;
    }
    static const struct {
        const char *group, *key;
        json_int_t min, max;
    } ranges[] = {
        {"ingest", "max_bytes", 256, 64 << 20}, {"ingest", "max_depth", 2, 1024},
        {"ingest", "batch_max", 1, 100000},     {"ingest", "queue_max", 1, 10000000},
        {"plugins", "batch", 1, 100000},        {"plugins", "attempts", 1, 1000},
        {"plugins", "pace", 0, 10000},          {"plugins", "tail", 0, 16777216},
        {"plugins", "yield", 0, 60000},         {"ingest", "busy", 0, 10000000},
        {"plugins", "backoff_min", 1, 3600000}, {"plugins", "backoff_max", 1, 86400000},
        {"publish", "hwm", 0, 100000000},       {"ingest", "spin_us", 0, 100000},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        json_int_t n = sc__cfg_int(core, ranges[i].group, ranges[i].key);
        if (n < ranges[i].min || n > ranges[i].max) {
            snprintf(err, errlen,
                     "%s.%s: must be between %" JSON_INTEGER_FORMAT " and %" JSON_INTEGER_FORMAT,
                     ranges[i].group, ranges[i].key, ranges[i].min, ranges[i].max);
            goto out;
        }
    }
    for (const char *const *lk = (const char *const[]){"load", "optional", NULL}; *lk; lk++) {
        size_t idx;
        json_t *e;
        json_array_foreach(json_object_get(json_object_get(core, "plugins"), *lk), idx, e)
        {
            if (!json_is_string(e)) {
                snprintf(err, errlen, "plugins.%s[%zu]: expected a plugin name", *lk, idx);
                goto out;
            }
        }
    }
    cfg->core = core;
    core = NULL;
    rc = 0;
out:
    json_decref(top);
    json_decref(core);
    return rc;
}

int sc__config_load(const char *path, sc__config_t **out, char *err, size_t errlen)
{
    config_t lc;
    config_init(&lc);
    int rc = -EINVAL;
    sc__config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        config_destroy(&lc);
        return -ENOMEM;
    }
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: could not read the config file", path);
        else
            snprintf(err, errlen, "%s:%d: %s",
                     config_error_file(&lc) ? config_error_file(&lc) : path, config_error_line(&lc),
                     config_error_text(&lc));
        goto out;
    }
    cfg->path = strdup(path);
    cfg->doc = s_to_json(config_root_setting(&lc));
    if ((rc = s_check_core(cfg, cfg->doc, err, errlen)) < 0)
        goto out;
    *out = cfg;
    cfg = NULL;
    rc = 0;
out:
    sc__config_free(&cfg);
    config_destroy(&lc);
    return rc;
}

void sc__config_free(sc__config_t **pcfg)
{
    sc__config_t *cfg = *pcfg;
    if (!cfg)
        return;
    json_decref(cfg->doc);
    json_decref(cfg->core);
    free(cfg->path);
    free(cfg);
    *pcfg = NULL;
}

const char *sc__cfg_str(const json_t *core, const char *group, const char *key)
{
    const json_t *g = group ? json_object_get(core, group) : core;
    return json_string_value(json_object_get(g, key));
}

json_int_t sc__cfg_int(const json_t *core, const char *group, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(core, group), key));
}

bool sc__cfg_bool(const json_t *core, const char *group, const char *key)
{
    return json_is_true(json_object_get(json_object_get(core, group), key));
}

const json_t *sc__config_section(const sc__config_t *cfg, const char *name)
{
    return json_object_get(cfg->doc, name);
}
