/* Unit tests: the config file and plugin sections — every refusal names file and line or the key's
 * path. */
#include "../../daemon/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_path[] = "/tmp/sc-test-config-XXXXXX";

static int s_load(const char *text, sc__config_t **cfg, char *err, size_t errlen)
{
    FILE *f = fopen(s_path, "w");
    fputs(text, f);
    fclose(f);
    return sc__config_load(s_path, cfg, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    sc__config_t *cfg = NULL;
    char err[512];
    assert_int_equal(s_load("", &cfg, err, sizeof err), 0);
    assert_string_equal(sc__cfg_str(cfg->core, "ingest", "endpoint"), "tcp://127.0.0.1:7600");
    assert_int_equal(sc__cfg_int(cfg->core, "ingest", "max_bytes"), 65536);
    assert_string_equal(sc__cfg_str(cfg->core, "publish", "endpoint"), "tcp://127.0.0.1:7601");
    assert_string_equal(sc__cfg_str(cfg->core, "clock", "mode"), "system");
    assert_string_equal(sc__cfg_str(cfg->core, NULL, "timezone"), "Asia/Shanghai");
    assert_string_equal(sc__cfg_str(cfg->core, "plugins", "dir"), "build/plugins");
    sc__config_free(&cfg);
    assert_null(cfg);

    assert_int_equal(s_load("ingest: { max_bytes = 1000; };\nclock: { tick_interval = \"2m\"; };\n"
                            "timezone = \"Europe/Berlin\";\n",
                            &cfg, err, sizeof err),
                     0);
    assert_int_equal(sc__cfg_int(cfg->core, "ingest", "max_bytes"), 1000);
    assert_int_equal(sc__cfg_int(cfg->core, "clock", "tick_interval"), 120);
    assert_string_equal(sc__cfg_str(cfg->core, NULL, "timezone"), "Europe/Berlin");
    sc__config_free(&cfg);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text, *expect;
    } cases[] = {
        {"ingest: { max_bytes = \"big\"; };", "ingest.max_bytes: expected an integer"},
        {"ingest: { max_bytes = 10; };", "ingest.max_bytes: must be between 256"},
        {"ingest: { colour = 1; };", "ingest.colour: unknown key"},
        {"ingest: { curve = 1; };", "ingest.curve: expected true or false"},
        {"clock: { mode = \"sundial\"; };", "clock.mode: must be one of system, manual"},
        {"clock: { start = \"tomorrow\"; };", "clock.start: expected an RFC 3339 time"},
        {"clock: { tick_interval = \"soon\"; };", "clock.tick_interval: expected a duration"},
        {"log: { level = \"loud\"; };", "log.level: must be one of"},
        {"plugins: { load = [1]; };", "plugins.load[0]: expected a plugin name"},
        {"timezone = 8;", "timezone: expected a string"},
        {"speed = 1;", "speed: unknown key"},
        {"ingest: {\n  max_bytes = ;\n};", ":2: syntax error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sc__config_t *cfg = NULL;
        char err[512] = "";
        int rc = s_load(cases[i].text, &cfg, err, sizeof err);
        if (rc == 0 || !strstr(err, cases[i].expect))
            fail_msg("case %zu \"%s\": rc %d, \"%s\", expected \"%s\"", i, cases[i].text, rc, err,
                     cases[i].expect);
        sc__config_free(&cfg);
    }
    sc__config_t *cfg = NULL;
    char err[512];
    assert_int_not_equal(sc__config_load("/nonexistent/safecampusd.conf", &cfg, err, sizeof err),
                         0);
    assert_non_null(strstr(err, "could not read"));
}

static void test_plugin_sections(void **state)
{
    (void)state;
    static const struct sc_config_key keys[] = {
        {"general_days", SC_CFG_INT, "7", ""}, {"reminder", SC_CFG_DURATION, "\"1d\"", ""},
        {"ratio", SC_CFG_FLOAT, "0.5", ""},    {"notify", SC_CFG_BOOL, "true", ""},
        {"rules", SC_CFG_LIST, "[]", ""},      {NULL, 0, NULL, NULL},
    };
    json_t *out = NULL;
    char err[256];
    json_t *given = json_pack("{s:i, s:s}", "general_days", 3, "reminder", "12h");
    assert_int_equal(sc__pconfig_fill(keys, "hazard_tracker", given, &out, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "general_days")), 3);
    assert_int_equal(json_integer_value(json_object_get(out, "reminder")), 43200);
    assert_true(json_is_real(json_object_get(out, "ratio")));
    assert_true(json_is_true(json_object_get(out, "notify")));
    assert_true(json_is_array(json_object_get(out, "rules")));
    json_decref(out);
    json_decref(given);

    given = json_pack("{s:s}", "general_days", "7");
    assert_int_equal(sc__pconfig_fill(keys, "hazard_tracker", given, &out, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "hazard_tracker.general_days: expected an integer");
    json_decref(given);
    given = json_pack("{s:b}", "verbose", 1);
    assert_int_equal(sc__pconfig_fill(keys, "hazard_tracker", given, &out, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "hazard_tracker.verbose: unknown key");
    json_decref(given);
}

static int s_setup(void **state)
{
    (void)state;
    int fd = mkstemp(s_path);
    if (fd >= 0)
        close(fd);
    return fd < 0;
}

static int s_teardown(void **state)
{
    (void)state;
    unlink(s_path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_plugin_sections),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
