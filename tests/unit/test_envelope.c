/* Unit tests: the envelope rules, each bad envelope with its error code and detail. */
#include "../../daemon/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static int s_risk(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const risks[] = {"general", "major", NULL};
    int rc = sc_check_code(ev->data, "data.", "hazard", true, detail, dlen);
    return rc < 0 ? rc : sc_check_enum(ev->data, "data.", "risk", true, risks, detail, dlen);
}

/* A registry as the loader would build it: sorted, one owner per type. */
static sc__type_t s_types[] = {
    {"directory.district.upserted", SC__CORE, SC_TYPE_DISTRICT, NULL},
    {"hazard.overdue", 0, SC_TYPE_EMITTED, NULL},
    {"hazard.reported", 0, 0, s_risk},
    {"inspection.missed", SC__NO_OWNER, 0, NULL},
    {"weather.alert", 0, SC_TYPE_DISTRICT, NULL},
};
static sc__registry_t s_reg = {.types = s_types, .ntypes = sizeof s_types / sizeof s_types[0]};
static const sc__limits_t s_limits = {.max_bytes = 1024, .max_depth = 8};

#define NOW (INT64_C(1781741700) * SC_USEC_PER_SEC)
#define HAZ "\"type\":\"hazard.reported\",\"school\":\"sch-001\",\"source\":\"app\""

static const struct {
    const char *frame;
    int code;
    const char *detail; /* a part of the detail that names the field and the rule */
    const char *id;     /* the id the reply must echo, or NULL */
} s_cases[] = {
    {"{" HAZ ",\"id\":\"a1\",\"data\":{\"hazard\":\"hz-1\",\"risk\":\"major\"}}", SC__OK, "", "a1"},
    {"{" HAZ ",\"occurred_at\":\"2026-06-18T08:15:00+08:00\",\"actor\":\"t-1\","
     "\"data\":{\"hazard\":\"hz-1\",\"risk\":\"general\"}}",
     SC__OK, "", NULL},
    {"{\"type\":\"weather.alert\",\"district\":\"dist-01\",\"source\":\"met\",\"data\":{}}", SC__OK,
     "", NULL},
    {"{\"type\":\"directory.district.upserted\",\"district\":\"d\",\"source\":\"x\",\"data\":{}}",
     SC__OK, "", NULL},
    {"not json", SC__E_MALFORMED, "frame:", NULL},
    {"{" HAZ ",\"data\":{}", SC__E_MALFORMED, "frame:", NULL},
    {"{" HAZ ",\"data\":{},\"data\":{}}", SC__E_MALFORMED, "duplicate", NULL},
    {"{" HAZ ",\"data\":{\"t\":\"\xc3\x28\"}}", SC__E_MALFORMED, "invalid UTF-8", NULL},
    {"{" HAZ ",\"data\":{\"a\":[[[[[[[[[1]]]]]]]]]}}", SC__E_TOO_LARGE, "nested deeper than 8",
     NULL},
    {"\"just a string\"", SC__E_INVALID, "frame: expected a JSON object", NULL},
    {"{\"school\":\"s\",\"source\":\"a\",\"id\":\"k\",\"data\":{}}", SC__E_INVALID,
     "type: required", "k"},
    {"{\"type\":7,\"school\":\"s\",\"source\":\"a\",\"data\":{}}", SC__E_INVALID,
     "type: expected a string", NULL},
    {"{\"type\":\"Hazard.Reported\",\"school\":\"s\",\"source\":\"a\",\"data\":{}}", SC__E_INVALID,
     "type: must be lowercase dotted words", NULL},
    {"{\"type\":\"hazard\",\"school\":\"s\",\"source\":\"a\",\"data\":{}}", SC__E_INVALID,
     "type: must be lowercase dotted words", NULL},
    {"{\"type\":\"hazard.reported\",\"school\":\"s\",\"data\":{}}", SC__E_INVALID,
     "source: required", NULL},
    {"{\"type\":\"hazard.reported\",\"school\":\"s\",\"source\":\"\",\"data\":{}}", SC__E_INVALID,
     "source: must be a code", NULL},
    {"{\"type\":\"hazard.reported\",\"source\":\"a\",\"data\":{}}", SC__E_INVALID,
     "school: required for hazard.reported", NULL},
    {"{\"type\":\"weather.alert\",\"source\":\"a\",\"data\":{}}", SC__E_INVALID,
     "school: required (or district", NULL},
    {"{\"type\":\"hazard.reported\",\"school\":\"sch 001\",\"source\":\"a\",\"data\":{}}",
     SC__E_INVALID, "school: must be a code", NULL},
    {"{" HAZ ",\"id\":\"\",\"data\":{}}", SC__E_INVALID, "id: must not be empty", NULL},
    {"{" HAZ ",\"id\":42,\"data\":{}}", SC__E_INVALID, "id: expected a string", NULL},
    {"{" HAZ ",\"occurred_at\":\"2026-06-18 08:15\",\"data\":{}}", SC__E_INVALID,
     "occurred_at: expected an RFC 3339 time", NULL},
    {"{" HAZ ",\"actor\":\"a b\",\"data\":{}}", SC__E_INVALID, "actor: must be a code", NULL},
    {"{" HAZ "}", SC__E_INVALID, "data: required", NULL},
    {"{" HAZ ",\"data\":\"x\"}", SC__E_INVALID, "data: expected an object", NULL},
    {"{" HAZ ",\"data\":{},\"extra\":1}", SC__E_INVALID, "extra: unknown field", NULL},
    {"{" HAZ ",\"id\":\"b2\",\"data\":{\"hazard\":\"hz-1\",\"risk\":\"huge\"}}", SC__E_INVALID,
     "data.risk: must be one of general, major", "b2"},
    {"{" HAZ ",\"data\":{\"risk\":\"major\"}}", SC__E_INVALID, "data.hazard: required", NULL},
    {"{" HAZ ",\"data\":{\"hazard\":\"hz-1\",\"risk\":\"major\",\"m\":[1e16,-0.0,99999]}}", SC__OK,
     "", NULL},
    {"{" HAZ ",\"data\":{\"hazard\":\"hz-1\",\"risk\":\"major\",\"m\":{\"a\":[0,-1e17]}}}",
     SC__E_INVALID, "data.m.a[1]: a number must be smaller than 1e17", NULL},
    {"{\"type\":\"hazard.unknown\",\"school\":\"s\",\"source\":\"a\",\"data\":{}}",
     SC__E_UNKNOWN_TYPE, "type: hazard.unknown is not a known event type", NULL},
    {"{\"type\":\"hazard.overdue\",\"school\":\"s\",\"source\":\"a\",\"data\":{}}", SC__E_FORBIDDEN,
     "raised by the daemon's plugins", NULL},
    {"{\"type\":\"inspection.missed\",\"school\":\"s\",\"source\":\"a\",\"data\":{}}",
     SC__E_FORBIDDEN, "raised by the daemon's plugins", NULL},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        sc__envelope_t env;
        char detail[512];
        int code = sc__envelope_parse(&s_reg, &s_limits, s_cases[i].frame, strlen(s_cases[i].frame),
                                      NOW, &env, detail, sizeof detail);
        if (code != s_cases[i].code || !strstr(detail, s_cases[i].detail))
            fail_msg("case %zu %s: got %s \"%s\", expected %s \"%s\"", i, s_cases[i].frame,
                     sc__error_code(code), detail, sc__error_code(s_cases[i].code),
                     s_cases[i].detail);
        if (s_cases[i].id) {
            assert_non_null(env.id);
            assert_string_equal(env.id, s_cases[i].id);
        }
        sc__envelope_clear(&env);
    }
}

static void test_fields_and_defaults(void **state)
{
    (void)state;
    const char *frame =
        "{" HAZ ",\"id\":\"z\",\"actor\":\"t-9\",\"occurred_at\":"
        "\"2026-06-18T08:15:00+08:00\",\"data\":{\"hazard\":\"h\",\"risk\":\"major\"}}";
    sc__envelope_t env;
    char detail[256];
    assert_int_equal(sc__envelope_parse(&s_reg, &s_limits, frame, strlen(frame), NOW, &env, detail,
                                        sizeof detail),
                     SC__OK);
    assert_string_equal(env.ev.type, "hazard.reported");
    assert_string_equal(env.ev.school, "sch-001");
    assert_string_equal(env.ev.source, "app");
    assert_string_equal(env.ev.source_id, "z");
    assert_string_equal(env.ev.actor, "t-9");
    assert_int_equal(env.ev.occurred_at, NOW);
    assert_int_equal(env.ev.received_at, NOW);
    assert_true(env.has_occurred);
    sc__envelope_clear(&env);

    /* No occurred_at: the time received. */
    const char *bare = "{" HAZ ",\"data\":{\"hazard\":\"h\",\"risk\":\"general\"}}";
    assert_int_equal(sc__envelope_parse(&s_reg, &s_limits, bare, strlen(bare), NOW + 5, &env,
                                        detail, sizeof detail),
                     SC__OK);
    assert_int_equal(env.ev.occurred_at, NOW + 5);
    assert_false(env.has_occurred);
    sc__envelope_clear(&env);
}

static void test_size_limit(void **state)
{
    (void)state;
    char frame[2048];
    int n = snprintf(frame, sizeof frame, "{" HAZ ",\"data\":{\"pad\":\"");
    memset(frame + n, 'x', 1100);
    strcpy(frame + n + 1100, "\"}}");
    sc__envelope_t env;
    char detail[256];
    assert_int_equal(sc__envelope_parse(&s_reg, &s_limits, frame, strlen(frame), NOW, &env, detail,
                                        sizeof detail),
                     SC__E_TOO_LARGE);
    assert_non_null(strstr(detail, "more than the limit of 1024"));
    sc__envelope_clear(&env);
}

/*
 * The text journaled for data: the frame's own when the journal reads it back as parsed,
 * serialised again otherwise (an exponent, a negative zero made zero, an escaped key).
 */
static void test_data_text(void **state)
{
    (void)state;
    static const struct {
        const char *data; /* the frame's data member, written after HAZ */
        const char *text; /* what is journaled; NULL: the frame's own text */
    } cases[] = {
        {"\"data\" : {\"hazard\":\"h\", \"risk\":\"major\", \"n\":[1, 2.5e0]}",
         "{\"hazard\":\"h\",\"risk\":\"major\",\"n\":[1,2.5]}"},
        {"\"data\":{\"hazard\":\"h\",\"risk\":\"major\",\"n\":-0.0}",
         "{\"hazard\":\"h\",\"risk\":\"major\",\"n\":0.0}"},
        {"\"d\\u0061ta\":{\"hazard\":\"h\",\"risk\":\"major\"}",
         "{\"hazard\":\"h\",\"risk\":\"major\"}"},
        {"\"data\" :\t{ \"hazard\":\"h\", \"risk\":\"major\",\"note\":\"e1 \\\"x\\\" "
         "1e5\",\"ok\":true,"
         "\"n\":[-0, 10.25, null, {\"k\":[]}]} ",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char frame[512], detail[256];
        snprintf(frame, sizeof frame, "{%s, " HAZ "}", cases[i].data);
        sc__envelope_t env;
        assert_int_equal(sc__envelope_parse(&s_reg, &s_limits, frame, strlen(frame), NOW, &env,
                                            detail, sizeof detail),
                         SC__OK);
        assert_int_equal(sc__envelope_data_text(&env, frame, strlen(frame)), 0);
        if (cases[i].text) {
            assert_true(env.data_owned);
            assert_int_equal(env.data_len, strlen(cases[i].text));
            assert_memory_equal(env.data_text, cases[i].text, env.data_len);
        } else {
            /* The member's value exactly as sent, from its first byte to its last. */
            const char *from = strchr(frame, '{') + 1;
            from = strchr(from, '{');
            assert_false(env.data_owned);
            assert_ptr_equal(env.data_text, from);
            assert_int_equal(env.data_text[env.data_len - 1], '}');
            assert_int_equal(env.data_text[env.data_len], ' ');
            json_t *back = json_loadb(env.data_text, env.data_len, 0, NULL);
            assert_true(json_equal(back, env.ev.data));
            json_decref(back);
        }
        sc__envelope_clear(&env);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_fields_and_defaults),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_data_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
