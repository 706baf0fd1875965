/* Unit tests: the journal's tail in memory (daemon/tail.c), which plugin runners take from. */
#include "../../daemon/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define S_MAX 64

static const char *const s_all[] = {"", NULL};
static const char *const s_gate[] = {"gate.", NULL};
static const char *const s_gate_health[] = {"health.", "gate.", NULL};

/*
 * A batch as journal_append numbers it: row i drew first + i; the rows in `dups` (a
 * string of 'd' and '.') were resends, answered with an older number.
 */
static void s_append(int64_t first, const char *types[], const char *dups)
{
    sc__jentry_t e[S_MAX];
    size_t n = 0;
    for (; types[n]; n++) {
        bool dup = dups && dups[n] == 'd';
        e[n] = (sc__jentry_t){.type = types[n],
                              .school = "s1",
                              .district = "d1",
                              .source = "gate-north",
                              .source_id = types[n],
                              .occurred_at = 1000 + first + (int64_t)n,
                              .received_at = 2000,
                              .data = "{\"card\":\"C1\"}",
                              .data_len = 13,
                              .event = dup ? 1 : first + (int64_t)n,
                              .duplicate = dup};
    }
    sc__tail_append(e, n);
}

/* Takes after `after`; returns the count, with the ids in ids[]. */
static int s_take(int64_t after, const char *const *prefixes, size_t max, int64_t ids[],
                  int64_t *upto, int64_t *lo)
{
    sc__tev_t *t[S_MAX];
    int n = sc__tail_take(after, prefixes, max, 1000, t, upto, lo);
    for (int i = 0; i < n; i++) {
        const char *data;
        size_t len;
        ids[i] = sc__tev_event(t[i], &data, &len)->id;
        sc__tev_release(t[i]);
    }
    return n;
}

static int s_setup(void **state)
{
    (void)state;
    sc__tail_init(8);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    sc__tail_free();
    return 0;
}

static void test_takes_what_follows_the_cursor_with_the_events_as_journaled(void **state)
{
    (void)state;
    s_append(10, (const char *[]){"gate.entry", "health.absence.reported", "gate.entry", NULL},
             NULL);
    sc__tev_t *t[S_MAX];
    int64_t upto, lo;
    assert_int_equal(sc__tail_take(9, s_all, S_MAX, 1000, t, &upto, &lo), 3);
    assert_int_equal(upto, 12);
    const char *data;
    size_t len;
    const sc_event_t *ev = sc__tev_event(t[1], &data, &len);
    assert_int_equal(ev->id, 11);
    assert_string_equal(ev->type, "health.absence.reported");
    assert_string_equal(ev->school, "s1");
    assert_string_equal(ev->district, "d1");
    assert_string_equal(ev->source, "gate-north");
    assert_null(ev->actor);
    assert_int_equal(ev->occurred_at, 1011);
    assert_int_equal(ev->received_at, 2000);
    assert_int_equal(len, 13);
    assert_string_equal(data, "{\"card\":\"C1\"}");
    for (int i = 0; i < 3; i++)
        sc__tev_release(t[i]);

    int64_t ids[S_MAX];
    /* Only the prefixes asked for; the ids between them are covered all the same. */
    assert_int_equal(s_take(9, s_gate, S_MAX, ids, &upto, &lo), 2);
    assert_int_equal(ids[0], 10);
    assert_int_equal(ids[1], 12);
    assert_int_equal(upto, 12);
    /* A full take ends at its last event, so the next starts right after it. */
    assert_int_equal(s_take(9, s_gate_health, 2, ids, &upto, &lo), 2);
    assert_int_equal(upto, 11);
    assert_int_equal(s_take(11, s_gate_health, 2, ids, &upto, &lo), 1);
    assert_int_equal(ids[0], 12);
    assert_int_equal(upto, 12);
    /* Nothing of ours left: the take covers the rest with none. */
    assert_int_equal(s_take(10, (const char *const[]){"hazard.", NULL}, S_MAX, ids, &upto, &lo), 0);
    assert_int_equal(upto, 12);
}

static void test_refuses_a_cursor_it_does_not_cover(void **state)
{
    (void)state;
    int64_t ids[S_MAX], upto, lo;
    assert_int_equal(s_take(0, s_all, S_MAX, ids, &upto, &lo), -1); /* empty */
    assert_true(lo == INT64_MAX);
    s_append(10, (const char *[]){"gate.entry", "gate.entry", NULL}, NULL);
    assert_int_equal(s_take(8, s_all, S_MAX, ids, &upto, &lo), -1); /* id 9: before it */
    assert_int_equal(lo, 10);
    assert_int_equal(s_take(11, s_all, S_MAX, ids, &upto, &lo), -1); /* at its end */
    assert_int_equal(s_take(9, s_all, S_MAX, ids, &upto, &lo), 2);
}

static void test_resends_leave_numbers_no_event_has(void **state)
{
    (void)state;
    int64_t ids[S_MAX], upto, lo;
    s_append(10, (const char *[]){"gate.a", "gate.b", "gate.c", NULL}, ".d.");
    s_append(13, (const char *[]){"gate.d", NULL}, NULL); /* follows on: 11 was nobody's */
    assert_int_equal(s_take(9, s_all, S_MAX, ids, &upto, &lo), 3);
    assert_int_equal(ids[0], 10);
    assert_int_equal(ids[1], 12);
    assert_int_equal(ids[2], 13);
    /* A batch of resends only: the number it drew (14) is unknown; the tail keeps what it
     * held and goes on after it. */
    s_append(0, (const char *[]){"gate.e", NULL}, "d");
    s_append(15, (const char *[]){"gate.f", NULL}, NULL);
    assert_int_equal(s_take(9, s_all, S_MAX, ids, &upto, &lo), 3); /* up to the unknown one */
    assert_int_equal(ids[2], 13);
    assert_int_equal(upto, 13);
    assert_int_equal(s_take(13, s_all, S_MAX, ids, &upto, &lo), -1); /* 14: the database's */
    assert_int_equal(lo, 15);
    assert_int_equal(s_take(14, s_all, S_MAX, ids, &upto, &lo), 1);
    assert_int_equal(ids[0], 15);
}

static void test_a_gap_is_left_to_the_database_and_a_late_batch_fills_it(void **state)
{
    (void)state;
    int64_t ids[S_MAX], upto, lo;
    s_append(10, (const char *[]){"gate.a", "gate.b", NULL}, NULL);
    /* 12 and 13 were drawn by someone else (another process, a rolled-back batch) or by a
     * batch not handed over yet. */
    s_append(14, (const char *[]){"gate.c", NULL}, NULL);
    assert_int_equal(s_take(9, s_all, S_MAX, ids, &upto, &lo), 2);
    assert_int_equal(upto, 11);
    assert_int_equal(s_take(11, s_all, S_MAX, ids, &upto, &lo), -1);
    assert_int_equal(lo, 14); /* read 12 and 13 from the database, then the tail again */
    assert_int_equal(s_take(13, s_all, S_MAX, ids, &upto, &lo), 1);
    assert_int_equal(ids[0], 14);
    /* Committed before the tail's last event, handed over after it: 12 was a resend. */
    s_append(12, (const char *[]){"gate.x", "gate.y", NULL}, "d.");
    assert_int_equal(s_take(11, s_all, S_MAX, ids, &upto, &lo), 2);
    assert_int_equal(ids[0], 13);
    assert_int_equal(ids[1], 14);
    /* Handed over twice: the tail keeps the first. */
    s_append(13, (const char *[]){"gate.z", NULL}, NULL);
    sc__tev_t *t[S_MAX];
    assert_int_equal(sc__tail_take(12, s_all, 1, 1000, t, &upto, &lo), 1);
    const char *data;
    size_t len;
    assert_string_equal(sc__tev_event(t[0], &data, &len)->type, "gate.y");
    sc__tev_release(t[0]);
    /* A gap as long as the tail (8) starts it afresh. */
    s_append(30, (const char *[]){"gate.w", NULL}, NULL);
    assert_int_equal(s_take(14, s_all, S_MAX, ids, &upto, &lo), -1);
    assert_int_equal(lo, 30);
    assert_int_equal(s_take(29, s_all, S_MAX, ids, &upto, &lo), 1);
}

static void test_an_event_the_database_may_have_completed_is_left_to_it(void **state)
{
    (void)state;
    int64_t ids[S_MAX], upto, lo;
    s_append(10, (const char *[]){"gate.a", NULL}, NULL);
    sc__jentry_t e = {.type = "gate.b",
                      .school = "s9", /* no district: the database fills in the school's */
                      .source = "x",
                      .data = "{}",
                      .data_len = 2,
                      .event = 11};
    sc__tail_append(&e, 1);
    s_append(12, (const char *[]){"gate.c", NULL}, NULL);
    assert_int_equal(s_take(10, s_all, S_MAX, ids, &upto, &lo), -1);
    assert_int_equal(lo, 12);
    assert_int_equal(s_take(9, s_all, S_MAX, ids, &upto, &lo), 1); /* 10, then 11 is unknown */
    assert_int_equal(upto, 10);
}

static void test_keeps_the_newest_and_outlives_its_readers(void **state)
{
    (void)state;
    int64_t ids[S_MAX], upto, lo;
    s_append(1, (const char *[]){"gate.1", "gate.2", "gate.3", "gate.4", "gate.5", NULL}, NULL);
    sc__tev_t *held[S_MAX];
    assert_int_equal(sc__tail_take(0, s_all, 2, 1000, held, &upto, &lo), 2);
    s_append(6, (const char *[]){"gate.6", "gate.7", "gate.8", "gate.9", "gate.10", NULL}, NULL);
    /* Room for 8: ids 1 and 2 went, while a reader still holds them. */
    assert_int_equal(s_take(0, s_all, S_MAX, ids, &upto, &lo), -1);
    assert_int_equal(lo, 3);
    assert_int_equal(s_take(2, s_all, S_MAX, ids, &upto, &lo), 8);
    assert_int_equal(ids[7], 10);
    const char *data;
    size_t len;
    assert_string_equal(sc__tev_event(held[1], &data, &len)->type, "gate.2");
    sc__tev_release(held[0]);
    sc__tev_release(held[1]);
    /* A batch larger than the tail keeps its newest. */
    const char *big[12];
    for (int i = 0; i < 11; i++)
        big[i] = "gate.big";
    big[11] = NULL;
    s_append(11, big, NULL);
    assert_int_equal(s_take(13, s_all, S_MAX, ids, &upto, &lo), 8);
    assert_int_equal(lo, 14);
    assert_int_equal(upto, 21);
}

static void test_off_when_sized_zero(void **state)
{
    (void)state;
    sc__tail_free();
    sc__tail_init(0);
    s_append(1, (const char *[]){"gate.1", NULL}, NULL);
    int64_t ids[S_MAX], upto, lo;
    assert_int_equal(s_take(0, s_all, S_MAX, ids, &upto, &lo), -1);
}

/* Ids from..to of types[id % ntypes], in batches of S_MAX. */
static void s_append_many(int64_t from, int64_t to, const char *const *types, size_t ntypes)
{
    for (int64_t first = from; first <= to; first += S_MAX) {
        const char *batch[S_MAX + 1];
        size_t k = 0;
        for (; k < S_MAX && first + (int64_t)k <= to; k++)
            batch[k] = types[(size_t)(first + (int64_t)k) % ntypes];
        batch[k] = NULL;
        s_append(first, batch, NULL);
    }
}

static void test_a_long_look_finds_what_lies_far_and_past_many_prefixes(void **state)
{
    (void)state;
    sc__tail_free();
    sc__tail_init(8192);
    /* 5 000 ids of other types, then one of the plugin's: the look goes past several points
     * where it lets intake in, and the type matches the last of 20 prefixes. */
    s_append_many(1, 5000, (const char *const[]){"gate.entry"}, 1);
    s_append(5001, (const char *[]){"zz.own", NULL}, NULL);
    const char *prefixes[21];
    char names[20][8];
    for (int i = 0; i < 19; i++) {
        snprintf(names[i], sizeof names[i], "p%02d.", i);
        prefixes[i] = names[i];
    }
    prefixes[19] = "zz.";
    prefixes[20] = NULL;
    sc__tev_t *t[4];
    int64_t upto, lo;
    int n = sc__tail_take(0, prefixes, 4, 8000, t, &upto, &lo);
    assert_int_equal(n, 1);
    const char *data;
    size_t len;
    assert_int_equal(sc__tev_event(t[0], &data, &len)->id, 5001);
    assert_int_equal(upto, 5001);
    sc__tev_release(t[0]);
    /* A shorter look stops where it was told, having found nothing of its own. */
    assert_int_equal(sc__tail_take(0, prefixes, 4, 3000, t, &upto, &lo), 0);
    assert_int_equal(upto, 3000);
}

/*
 * The test is linked with --wrap=pthread_rwlock_rdlock: when s_burst_at_lock counts down
 * to zero at a read-lock, a burst of S_BURST ids is appended just before it is taken, as
 * intake would while a long look has let go of the lock.
 */
#define S_BURST 2048
static int s_burst_at_lock;
static int64_t s_burst_from;

int __real_pthread_rwlock_rdlock(pthread_rwlock_t *lock);
int __wrap_pthread_rwlock_rdlock(pthread_rwlock_t *lock);
int __wrap_pthread_rwlock_rdlock(pthread_rwlock_t *lock)
{
    if (s_burst_at_lock > 0 && --s_burst_at_lock == 0)
        s_append_many(s_burst_from, s_burst_from + S_BURST - 1,
                      (const char *const[]){"health.absence", "gate.entry"}, 2);
    return __real_pthread_rwlock_rdlock(lock);
}

static void test_a_look_the_tail_went_round_ends_where_it_was_dropped(void **state)
{
    (void)state;
    sc__tail_free();
    sc__tail_init(S_BURST);
    /* Ids 1..2048, the plugin's own at 100 and 1500; the look lets go of the lock before id
     * 1024 and a burst of 2 048 (gate events at every odd id) drops everything it held. */
    for (int64_t first = 1; first <= S_BURST; first += S_MAX) {
        const char *batch[S_MAX + 1];
        for (int64_t k = 0; k < S_MAX; k++) {
            int64_t id = first + k;
            batch[k] = id == 100 || id == 1500 ? "gate.entry" : "health.absence";
        }
        batch[S_MAX] = NULL;
        s_append(first, batch, NULL);
    }
    s_burst_at_lock = 2;
    s_burst_from = S_BURST + 1;
    sc__tev_t *t[S_MAX];
    int64_t upto, lo;
    /* What it found before, and no further: the slots past it hold the burst's events now
     * (slot 1025 the burst's gate event 3073), which the look must not hand out. */
    assert_int_equal(sc__tail_take(0, s_gate, S_MAX, 0, t, &upto, &lo), 1);
    assert_int_equal(s_burst_at_lock, 0);
    const char *data;
    size_t len;
    assert_int_equal(sc__tev_event(t[0], &data, &len)->id, 100);
    sc__tev_release(t[0]);
    assert_int_equal(upto, 1023);
    /* The next take is left to the database up to the tail's new start. */
    assert_int_equal(sc__tail_take(upto, s_gate, S_MAX, 0, t, &upto, &lo), -1);
    assert_int_equal(lo, S_BURST + 1);
}

/* Appends gate and health events one batch after another until told to stop. */
static atomic_bool s_stop;
static void *s_appender(void *arg)
{
    (void)arg;
    static const char *const types[] = {"gate.entry", "health.absence"};
    for (int64_t first = 1; !atomic_load(&s_stop); first += S_MAX) {
        const char *batch[S_MAX + 1];
        for (size_t k = 0; k < S_MAX; k++)
            batch[k] = types[(size_t)(first + (int64_t)k) % 2];
        batch[S_MAX] = NULL;
        s_append(first, batch, NULL);
    }
    return NULL;
}

static void test_a_look_shares_the_tail_with_intake(void **state)
{
    (void)state;
    sc__tail_free();
    sc__tail_init(2048);
    atomic_store(&s_stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_appender, NULL), 0);
    /* Long looks while the tail goes round under them: what is taken is always of the
     * prefix, in order, after the cursor; what was dropped meanwhile is left to the
     * database (a look that ends early), never handed out. */
    int64_t after = 0, taken = 0, until = sc__mono_ms() + 20000;
    while (taken < 20000 && sc__mono_ms() < until) {
        sc__tev_t *t[S_MAX];
        int64_t upto, lo;
        int n = sc__tail_take(after, s_gate, S_MAX, 2048, t, &upto, &lo);
        if (n < 0) { /* behind the tail: as a runner would after its database read */
            after = lo == INT64_MAX ? after : lo - 1;
            continue;
        }
        int64_t prev = after;
        for (int i = 0; i < n; i++) {
            const char *data;
            size_t len;
            const sc_event_t *ev = sc__tev_event(t[i], &data, &len);
            assert_true(ev->id > prev);
            assert_int_equal(strncmp(ev->type, "gate.", 5), 0);
            assert_int_equal(ev->id % 2, 0);
            prev = ev->id;
            sc__tev_release(t[i]);
        }
        assert_true(upto >= prev);
        taken += n;
        after = upto;
    }
    atomic_store(&s_stop, true);
    pthread_join(th, NULL);
    assert_true(taken > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_takes_what_follows_the_cursor_with_the_events_as_journaled, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refuses_a_cursor_it_does_not_cover, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_resends_leave_numbers_no_event_has, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_gap_is_left_to_the_database_and_a_late_batch_fills_it, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_an_event_the_database_may_have_completed_is_left_to_it,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keeps_the_newest_and_outlives_its_readers, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_off_when_sized_zero, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_long_look_finds_what_lies_far_and_past_many_prefixes,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_look_the_tail_went_round_ends_where_it_was_dropped,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_look_shares_the_tail_with_intake, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
