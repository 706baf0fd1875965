/* Unit tests: the plugin loader refuses a wrong ABI or name, and optional plugins are skipped. */
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
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[512];
static char s_conf[600];

static const char *s_build(void)
{
    const char *b = getenv("SC_BUILD");
    return b ? b : "build";
}

static void s_link(const char *name)
{
    char from[1024], to[1024];
    snprintf(from, sizeof from, "%s/tests/plugins/%s.so", s_build(), name);
    char *abs = realpath(from, NULL);
    assert_non_null(abs);
    snprintf(to, sizeof to, "%s/%s.so", s_dir, name);
    assert_int_equal(symlink(abs, to), 0);
    free(abs);
}

static sc__config_t *s_config(const char *extra)
{
    FILE *f = fopen(s_conf, "w");
    fprintf(f, "plugins: { dir = \"%s\"; %s };\n", s_dir, extra);
    fclose(f);
    sc__config_t *cfg = NULL;
    char err[512];
    assert_int_equal(sc__config_load(s_conf, &cfg, err, sizeof err), 0);
    return cfg;
}

static void test_wrong_abi_is_refused_naming_both_versions(void **state)
{
    (void)state;
    char path[1024], err[1024], expect[128];
    snprintf(path, sizeof path, "%s/tests/plugins/bad_abi.so", s_build());
    sc__slot_t slot;
    assert_int_equal(sc__plugin_open(path, "bad_abi", &slot, err, sizeof err), -EINVAL);
    snprintf(expect, sizeof expect, "built for plugin ABI %d, this daemon speaks ABI %d",
             SC_PLUGIN_ABI + 98, SC_PLUGIN_ABI);
    if (!strstr(err, expect))
        fail_msg("\"%s\" does not say \"%s\"", err, expect);
}

static void test_name_must_match_file(void **state)
{
    (void)state;
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/tests/plugins/probe.so", s_build());
    sc__slot_t slot;
    assert_int_equal(sc__plugin_open(path, "probe", &slot, err, sizeof err), 0);
    assert_string_equal(slot.p->name, "probe");
    free(slot.path);
    assert_int_equal(sc__plugin_open(path, "hazard_tracker", &slot, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "names must match"));
    assert_int_equal(sc__plugin_open("/nonexistent.so", NULL, &slot, err, sizeof err), -ENOENT);
}

static void test_registry_refuses_a_bad_plugin_unless_optional(void **state)
{
    (void)state;
    s_link("probe");
    s_link("bad_abi");
    sc__config_t *cfg = s_config("");
    sc__registry_t *reg = NULL;
    char err[1024];
    assert_int_equal(sc__registry_load(cfg, &reg, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad_abi"));
    sc__config_free(&cfg);

    cfg = s_config("optional = [\"bad_abi\"];");
    assert_int_equal(sc__registry_load(cfg, &reg, err, sizeof err), 0);
    assert_int_equal(reg->nslots, 1);
    assert_string_equal(reg->slots[0].p->name, "probe");
    const sc__type_t *t = sc__registry_type(reg, "probe.event");
    assert_non_null(t);
    assert_int_equal(t->owner, 0);
    t = sc__registry_type(reg, "probe.fired");
    assert_true(t->flags & SC_TYPE_EMITTED);
    t = sc__registry_type(reg, "directory.person.upserted");
    assert_int_equal(t->owner, SC__CORE);
    assert_null(sc__registry_type(reg, "probe.nothing"));
    sc__registry_free(&reg);
    sc__config_free(&cfg);

    cfg = s_config("load = [\"probe\"];");
    assert_int_equal(sc__registry_load(cfg, &reg, err, sizeof err), 0);
    assert_int_equal(reg->nslots, 1);
    sc__registry_free(&reg);
    sc__config_free(&cfg);
}

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/sc-test-loader-%d", (int)getpid());
    snprintf(s_conf, sizeof s_conf, "%s.conf", s_dir);
    return mkdir(s_dir, 0700);
}

static int s_teardown(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/probe.so", s_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/bad_abi.so", s_dir);
    unlink(path);
    rmdir(s_dir);
    unlink(s_conf);
    return 0;
}

/* The list a plugin asks for is cut to what its own list lets through (sc_host.subscribe). */
static void test_subscribe_narrow(void **state)
{
    (void)state;
    static const struct {
        const char *outer[4], *wanted[5], *want;
    } cases[] = {
        {{"hazard.", "gate."}, {"hazard.overdue", "gate", "fire."}, "hazard.overdue gate."},
        /* a broader prefix covers the narrower ones, whatever the order */
        {{"hazard."}, {"hazard.overdue", "hazard.", "hazard.major"}, "hazard."},
        {{"health.", "hazard."}, {"h"}, "health. hazard."},
        /* the same prefix asked twice is kept once; nothing inside: nothing read */
        {{"gate."}, {"gate.exit", "gate.exit"}, "gate.exit"},
        {{"gate."}, {"fire."}, ""},
        {{"gate."}, {NULL}, ""},
        /* the list narrowed by itself is itself, less what it covers twice */
        {{"a.", "a.b", "c"}, {"a.", "a.b", "c"}, "a. c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char **got = sc__subscribe_narrow(cases[i].outer, cases[i].wanted), text[200] = "";
        assert_non_null(got);
        for (size_t k = 0; got[k]; k++)
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s", k ? " " : "", got[k]);
        if (strcmp(text, cases[i].want) != 0)
            fail_msg("case %zu: \"%s\", wanted \"%s\"", i, text, cases[i].want);
        sc__strv_free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_abi_is_refused_naming_both_versions),
        cmocka_unit_test(test_name_must_match_file),
        cmocka_unit_test(test_registry_refuses_a_bad_plugin_unless_optional),
        cmocka_unit_test(test_subscribe_narrow),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
