/*
 * Unit tests: how long a plugin's runner may sleep at the top of its loop (daemon/runner.c,
 * sc__runner_wait_ms), case by case.
 */
#include "../../daemon/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#define NOW 100000

static void test_the_wait_case_by_case(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        sc__runner_wait_t w;
        long want;
    } cases[] = {
        {"idle: until woken or its tick", {.connected = true}, -1},
        {"disconnected: until the next attempt",
         {.reconnect_at_ms = NOW + 250, .pace_until_ms = NOW + 10, .woken = true},
         250},
        {"disconnected, the attempt due 1 ms ago: at once, not forever",
         {.reconnect_at_ms = NOW - 1},
         0},
        {"backing off: until the retry, whatever else",
         {.connected = true, .more = true, .retry_at_ms = NOW + 40},
         40},
        {"a full batch behind it: at once",
         {.connected = true, .more = true, .pace_until_ms = NOW + 50},
         0},
        {"woken while its pace runs: until the pace is out",
         {.connected = true, .woken = true, .pace_until_ms = NOW + 30},
         30},
        /* The wake-up was read while the pace ran, which then ran out before the loop came
         * round: the runner had slept until its next tick, a second of events behind. */
        {"woken, the pace just out: at once",
         {.connected = true, .woken = true, .pace_until_ms = NOW},
         0},
        {"woken, the pace long out: at once",
         {.connected = true, .woken = true, .pace_until_ms = NOW - 5000},
         0},
        {"holding for a busy intake: the caller's look, not a spin",
         {.connected = true, .woken = true, .more = true, .holding = true},
         -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long got = sc__runner_wait_ms(&cases[i].w, NOW);
        if (got != cases[i].want)
            fail_msg("%s: %ld, want %ld", cases[i].what, got, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_wait_case_by_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
