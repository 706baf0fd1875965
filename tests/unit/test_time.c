/* Unit tests: RFC 3339 times, dates and durations. */
#include <safecampus/util.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static void test_good_times(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t secs;
        int64_t usec;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0, 0},
        {"2026-06-18T08:15:00+08:00", 1781741700, 0},
        {"2026-06-18T00:15:00Z", 1781741700, 0},
        {"2026-06-18t00:15:00z", 1781741700, 0},
        {"2026-06-17T19:15:00-05:00", 1781741700, 0},
        {"2026-06-18T00:15:00.5Z", 1781741700, 500000},
        {"2026-06-18T00:15:00.123456789Z", 1781741700, 123456},
        {"2024-02-29T12:00:00Z", 1709208000, 0},
        {"1969-12-31T23:59:59Z", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sc_time_t t = 0;
        assert_int_equal(sc_time_parse(cases[i].in, &t), 0);
        assert_int_equal(t, cases[i].secs * SC_USEC_PER_SEC + cases[i].usec);
    }
}

static void test_bad_times(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-06-18",
        "2026-06-18 08:15:00Z", /* space separator is not RFC 3339 */
        "2026-06-18T08:15:00",  /* no offset */
        "2026-06-18T08:15:00+0800",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z", /* not a leap year */
        "2026-04-31T00:00:00Z",
        "2026-06-18T24:00:00Z",
        "2026-06-18T08:60:00Z",
        "2026-06-18T08:15:00.Z",
        "2026-06-18T08:15:00Zjunk",
        "26-06-18T08:15:00Z",
        "yesterday",
        "0000-01-01T00:00:00+01:00", /* before year 1 in UTC */
        "9999-12-31T23:59:59-00:01", /* after year 9999 in UTC */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sc_time_t t;
        if (sc_time_parse(bad[i], &t) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_format_round_trip(void **state)
{
    (void)state;
    char buf[SC_TIME_LEN];
    assert_string_equal(sc_time_format(1781741700 * SC_USEC_PER_SEC, buf), "2026-06-18T00:15:00Z");
    assert_string_equal(sc_time_format(1781741700 * SC_USEC_PER_SEC + 42, buf),
                        "2026-06-18T00:15:00.000042Z");
    assert_string_equal(sc_time_format(-1 * SC_USEC_PER_SEC, buf), "1969-12-31T23:59:59Z");
    sc_time_t t;
    assert_int_equal(sc_time_parse(buf, &t), 0);
    assert_int_equal(t, -1 * SC_USEC_PER_SEC);
}

static void test_dates(void **state)
{
    (void)state;
    int64_t d;
    char buf[11];
    assert_int_equal(sc_date_parse("2026-06-18", &d), 0);
    assert_int_equal(d, 20622);
    assert_string_equal(sc_date_format(d, buf), "2026-06-18");
    assert_int_equal(sc_date_parse("2026-06-31", &d), -EINVAL);
    assert_int_equal(sc_date_parse("2026-06-18T00:00:00Z", &d), -EINVAL);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t secs;
    } good[] = {{"90", 90},     {"90s", 90},    {"15m", 900},   {"2h", 7200},
                {"7d", 604800}, {"1w", 604800}, {"1h30m", 5400}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t s;
        assert_int_equal(sc_duration_parse(good[i].in, &s), 0);
        assert_int_equal(s, good[i].secs);
    }
    static const char *const bad[] = {"",
                                      "h",
                                      "10x",
                                      "-5",
                                      "1.5h",
                                      "5 m",
                                      "1525028445247w",
                                      "99999999999999999999",
                                      "600000d600000d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t s;
        if (sc_duration_parse(bad[i], &s) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_utf8_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad\xe6\x96\x87"}, /* 中文 */
        {"cut \xe4\xb8", "cut "},
        {"a\xff"
         "b",
         "a?b"},
        {"\xc0\xafx", "??x"},      /* an overlong '/' */
        {"\xed\xa0\x80.", "???."}, /* a surrogate */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        assert_string_equal(sc_utf8_clean(buf), cases[i].out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_times),        cmocka_unit_test(test_bad_times),
        cmocka_unit_test(test_format_round_trip), cmocka_unit_test(test_dates),
        cmocka_unit_test(test_durations),         cmocka_unit_test(test_utf8_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
