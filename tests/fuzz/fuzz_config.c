/*
 * libFuzzer target: the config loader. Each input is written to a scratch file
 * (under /dev/shm when it can) and read with sc__config_load, as safecampusd
 * and safecampusctl read --config; then every top-level group is checked with
 * sc__pconfig_fill the way the plugin loader checks a plugin's section: a
 * group named after a loaded plugin against that plugin's own key table, any
 * other group against a sample table holding one key of every kind.
 *
 * Inputs that use libconfig's @include are skipped: they name other files
 * (a FIFO or /dev/stdin would block the run), and the config file is written
 * by the operator, who may include what they like.
 *
 * SC_FUZZ_PRINT_SECTIONS=1 prints every plugin's section with its defaults, as
 * libconfig text, and exits (tests/fuzz/mkseeds.py makes seeds of it).
 *
 * Fails on crashes, sanitizer reports and leaks, a refusal without a message,
 * and an accepted config whose checked core lacks a group or holds a value
 * the daemon then trusts (clock.mode, a negative duration).
 */
#include "common.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sc__config_t *s_cfg;
static sc__registry_t *s_reg;
static int s_fd = -1;
static char s_path[PATH_MAX];

static const struct sc_config_key s_sample_keys[] = {
    {"flag", SC_CFG_BOOL, "false", "a boolean"},
    {"count", SC_CFG_INT, "7", "an integer"},
    {"ratio", SC_CFG_FLOAT, "0.5", "a number"},
    {"name", SC_CFG_STRING, "\"x\"", "a string"},
    {"nothing", SC_CFG_STRING, "null", "a string without a default"},
    {"wait", SC_CFG_DURATION, "\"15m\"", "a duration"},
    {"items", SC_CFG_LIST, "[]", "a list"},
    {"nested", SC_CFG_GROUP, "{}", "a group"},
    {NULL, 0, NULL, NULL},
};

/* ---- SC_FUZZ_PRINT_SECTIONS=1: every plugin's section, defaults filled, as libconfig ---- */

static void s_print_value(const json_t *v, int indent);

static void s_print_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void s_print_members(const json_t *o, int indent)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (json_is_null(v))
            continue; /* libconfig has no null: the key is left out, as a user would */
        printf("%*s%s = ", indent, "", k);
        s_print_value(v, indent);
        printf(";\n");
    }
}

static void s_print_value(const json_t *v, int indent)
{
    size_t i;
    json_t *e;
    bool scalars = true;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        printf("{\n");
        s_print_members(v, indent + 2);
        printf("%*s}", indent, "");
        break;
    case JSON_ARRAY:
        json_array_foreach(v, i, e) scalars &= !json_is_object(e) && !json_is_array(e);
        printf("%c ", scalars ? '[' : '(');
        json_array_foreach(v, i, e)
        {
            printf("%s", i ? ", " : "");
            s_print_value(e, indent + 2);
        }
        printf(" %c", scalars ? ']' : ')');
        break;
    case JSON_STRING:
        s_print_string(json_string_value(v));
        break;
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        printf("%" JSON_INTEGER_FORMAT "%s", n, n > INT32_MAX || n < INT32_MIN ? "L" : "");
        break;
    }
    case JSON_REAL: {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        printf("%s%s", buf, strpbrk(buf, ".eEn") ? "" : ".0");
        break;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        printf("%s", json_is_true(v) ? "true" : "false");
        break;
    case JSON_NULL:
        break;
    }
}

static void s_print_sections(void)
{
    for (size_t i = 0; i < s_reg->nslots; i++) {
        printf("%s: {\n", s_reg->slots[i].p->name);
        s_print_members(s_reg->slots[i].config, 2);
        printf("};\n");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sc__log_level = SC_LOG_ERR - 1;
    fz_load(NULL, &s_cfg, &s_reg);
    if (getenv("SC_FUZZ_PRINT_SECTIONS")) {
        s_print_sections();
        exit(0);
    }
    /* Unlinked at once, read through /proc/self/fd: nothing is left, however the run ends. */
    char path[PATH_MAX];
    s_fd = fz_scratch("config", path, sizeof path);
    unlink(path);
    snprintf(s_path, sizeof s_path, "/proc/self/fd/%d", s_fd);
    return 0;
}

static void s_check_core(const json_t *core)
{
    static const char *const groups[] = {"database", "ingest",  "publish", "control",
                                         "clock",    "plugins", "log",     NULL};
    for (size_t i = 0; groups[i]; i++)
        if (!json_is_object(json_object_get(core, groups[i])))
            fz_fail("config: accepted without the checked group %s", groups[i]);
    if (!sc__cfg_str(core, NULL, "timezone"))
        fz_fail("config: accepted without a timezone");
    const char *mode = sc__cfg_str(core, "clock", "mode");
    if (!mode || (strcmp(mode, "system") != 0 && strcmp(mode, "manual") != 0))
        fz_fail("config: accepted clock.mode \"%s\"", mode ? mode : "(null)");
    if (sc__log_level_parse(sc__cfg_str(core, "log", "level")) < 0)
        fz_fail("config: accepted an unknown log.level");
    static const struct {
        const char *group, *key;
    } durations[] = {
        {"database", "reconnect_max"}, {"clock", "tick_interval"}, {"clock", "sync_timeout"}};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        const json_t *v =
            json_object_get(json_object_get(core, durations[i].group), durations[i].key);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            fz_fail("config: accepted %s.%s that is not a non-negative integer", durations[i].group,
                    durations[i].key);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "@include", 8))
        return 0;
    fz_rewrite(s_fd, data, size);

    sc__config_t *cfg = NULL;
    char err[1024] = "";
    if (sc__config_load(s_path, &cfg, err, sizeof err) < 0) {
        if (cfg)
            fz_fail("config: refused, yet a config was returned");
        if (!err[0])
            fz_fail("config: refused without a message");
        return 0;
    }
    if (!cfg || !cfg->doc || !cfg->core)
        fz_fail("config: accepted without the parsed document or the checked core");
    s_check_core(cfg->core);

    const char *key;
    json_t *v;
    json_object_foreach(cfg->doc, key, v)
    {
        if (!json_is_object(v) || sc__config_is_core_group(key))
            continue;
        int slot = sc__registry_slot(s_reg, key);
        const struct sc_config_key *keys = slot >= 0 ? s_reg->slots[slot].p->config : s_sample_keys;
        json_t *out = NULL;
        err[0] = '\0';
        int rc = sc__pconfig_fill(keys, key, sc__config_section(cfg, key), &out, err, sizeof err);
        if (rc < 0 && (out || !err[0]))
            fz_fail("pconfig %s: refused without a message, or with a result", key);
        if (rc == 0) {
            if (!json_is_object(out))
                fz_fail("pconfig %s: accepted without a result object", key);
            for (const struct sc_config_key *k = keys; k && k->name; k++)
                if (!json_object_get(out, k->name))
                    fz_fail("pconfig %s: key %s missing from the filled section", key, k->name);
        }
        json_decref(out);
    }
    sc__config_free(&cfg);
    if (cfg)
        fz_fail("config: sc__config_free did not clear the pointer");
    return 0;
}
