/*
 * Unit tests: the ingest thread's arenas (daemon/arena.c) and the journal's columns built
 * entry by entry (daemon/journal.c).
 */
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

static int s_setup(void **state)
{
    (void)state;
    sc__arena_json_hooks();
    return 0;
}

static void test_blocks_are_aligned_and_distinct(void **state)
{
    (void)state;
    sc__arena_t a = {0};
    char *prev = NULL;
    for (size_t n = 0; n < 5000; n++) {
        char *p = sc__arena_alloc(&a, n % 97);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, 0xa5, n % 97); /* AddressSanitizer: inside what was handed out */
        assert_true(p != prev);
        prev = p;
    }
    /* Larger than a block: a block of its own. */
    char *big = sc__arena_alloc(&a, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    sc__arena_release(&a);
    assert_null(a.blocks);
}

static size_t s_blocks(const sc__arena_t *a)
{
    size_t n = 0;
    for (const sc__arena_block_t *b = a->blocks; b; b = b->next)
        n++;
    return n;
}

static void test_a_reset_keeps_one_block_the_size_of_the_last_fill(void **state)
{
    (void)state;
    sc__arena_t a = {0};
    for (int i = 0; i < 3000; i++)
        assert_non_null(sc__arena_alloc(&a, 100));
    assert_true(s_blocks(&a) > 1);
    sc__arena_reset(&a);
    assert_int_equal(s_blocks(&a), 1);
    /* The same fill again needs no other block. */
    for (int i = 0; i < 3000; i++)
        assert_non_null(sc__arena_alloc(&a, 100));
    assert_int_equal(s_blocks(&a), 1);
    char *first = a.blocks ? a.cur : NULL;
    sc__arena_reset(&a);
    assert_int_equal(s_blocks(&a), 1);
    assert_true(a.cur < first); /* back to the start */
    sc__arena_release(&a);

    sc__arena_t empty = {0};
    sc__arena_reset(&empty);
    assert_null(empty.blocks);
}

/* A refused frame's memory goes back: refusals one after another do not fill the arena. */
static void test_a_rollback_frees_what_came_after_the_mark(void **state)
{
    (void)state;
    sc__arena_t a = {0};
    assert_non_null(sc__arena_alloc(&a, 64));
    for (int round = 0; round < 100; round++) {
        sc__arena_mark_t m = sc__arena_mark(&a);
        for (int i = 0; i < 2000; i++) /* three blocks' worth */
            assert_non_null(sc__arena_alloc(&a, 100));
        sc__arena_rollback(&a, m);
        assert_ptr_equal(a.cur, m.cur);
        assert_int_equal(s_blocks(&a), 1);
    }
    sc__arena_release(&a);

    sc__arena_t empty = {0};
    sc__arena_mark_t m = sc__arena_mark(&empty);
    assert_non_null(sc__arena_alloc(&empty, 100000));
    sc__arena_rollback(&empty, m);
    assert_null(empty.blocks);
    assert_null(empty.cur);
}

/* jansson takes from the arena only while it is in use, and frees nothing of it meanwhile. */
static void test_jansson_allocates_from_the_arena_in_use(void **state)
{
    (void)state;
    sc__arena_t a = {0};
    assert_null(sc__arena_use(&a));
    json_t *doc =
        json_loads("{\"type\":\"gate.entry\",\"data\":{\"card\":\"c-1\",\"n\":[1,2.5]}}", 0, NULL);
    assert_non_null(doc);
    char *text = json_dumps(json_object_get(doc, "data"), JSON_COMPACT);
    json_decref(doc); /* a no-op: the tree stays readable until the arena is reset */
    assert_ptr_equal(sc__arena_use(NULL), &a);
    assert_non_null(a.blocks);
    assert_true((char *)doc >= (char *)a.blocks && (char *)doc < a.end);
    assert_true(text >= (char *)a.blocks && text < a.end);
    assert_string_equal(text, "{\"card\":\"c-1\",\"n\":[1,2.5]}");
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "gate.entry");

    /* Outside it, malloc and free as usual (AddressSanitizer would catch a leak or a bad free). */
    json_t *own = json_pack("{s:s}", "k", "v");
    assert_true((char *)own < (char *)a.blocks || (char *)own >= a.end);
    json_decref(own);
    sc__arena_release(&a);
}

static void test_columns_add_whole_entries_and_join_in_order(void **state)
{
    (void)state;
    sc__jcols_t one = {0}, two = {0}, buf = {0};
    sc__jentry_t e = {.type = "gate.entry",
                      .school = "s1",
                      .source = "gate-east",
                      .source_id = "x-1",
                      .occurred_at = 1,
                      .received_at = 2,
                      .data = "{}",
                      .data_len = 2};
    assert_int_equal(sc__jcols_add(&one, &e), 0);
    e.source_id = "x-2";
    e.actor = "p-1";
    assert_int_equal(sc__jcols_add(&two, &e), 0);
    assert_int_equal(sc__jcols_add(&two, &e), 0);
    assert_int_equal(one.n, 1);
    assert_int_equal(two.n, 2);
    /* type: 4-byte length + 10 bytes per entry; district and actor NULL: length -1 alone. */
    assert_int_equal(one.col[0].len, 14);
    assert_int_equal(one.col[2].len, 4);
    assert_int_equal(one.col[7].len, 4);
    assert_int_equal(two.col[7].len, 2 * (4 + 3));
    assert_int_equal(one.col[8].len, 4 + 1 + 2); /* jsonb: a version byte, then the text */

    sc__jcols_reset(&two);
    assert_int_equal(two.n, 0);
    assert_int_equal(two.col[0].len, 0);
    assert_non_null(two.col[0].p); /* the memory is kept */
    assert_int_equal(sc__jcols_add(&two, &e), 0);
    sc__jcols_free(&one);
    sc__jcols_free(&two);
    sc__jcols_free(&buf);
}

/* A connection to the test cluster (SC_TEST_CONNINFO). */
static PGconn *s_connect(void)
{
    const char *conninfo = getenv("SC_TEST_CONNINFO");
    if (!conninfo)
        fail_msg("SC_TEST_CONNINFO is not set (run through make test)");
    PGconn *conn = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    return conn;
}

/*
 * The columns of several parts sent as one batch reach the server whole and in order. The
 * statement sc__journal_send runs is prepared here as one that gives the arrays back.
 */
static void test_parts_reach_the_server_as_one_batch(void **state)
{
    (void)state;
    PGconn *conn = s_connect();
    PGresult *res = PQprepare(
        conn, "sc_journal_append",
        "SELECT t, s, d, src, sid, o, r, a, j::text FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[],"
        " $9::jsonb[]) AS u(t, s, d, src, sid, o, r, a, j)",
        9, NULL);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    sc__jcols_t parts[3], buf = {0};
    memset(parts, 0, sizeof parts);
    char ids[5][8];
    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof ids[i], "x-%d", i);
        sc__jentry_t e = {.type = "gate.entry",
                          .school = "s1",
                          .district = i % 2 ? "d1" : NULL,
                          .source = "gate-east",
                          .source_id = ids[i],
                          .occurred_at = 946684800000000 + i,
                          .received_at = 946684800000000,
                          .actor = i == 4 ? "p-1" : NULL,
                          .data = "{\"n\": 1}",
                          .data_len = 8};
        assert_int_equal(sc__jcols_add(&parts[i < 2 ? 0 : i < 4 ? 1 : 2], &e), 0);
    }
    const sc__jcols_t *order[3] = {&parts[0], &parts[1], &parts[2]};
    char err[256];
    for (int round = 0; round < 2; round++) { /* the scratch buffer serves again */
        assert_int_equal(sc__journal_send(conn, order, 3, &buf, true, err, sizeof err), 0);
        res = PQgetResult(conn);
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(res), 5);
        for (int i = 0; i < 5; i++) {
            assert_string_equal(PQgetvalue(res, i, 4), ids[i]);
            assert_int_equal(PQgetisnull(res, i, 2), i % 2 == 0);
            assert_int_equal(PQgetisnull(res, i, 7), i != 4);
            assert_string_equal(PQgetvalue(res, i, 8), "{\"n\": 1}");
        }
        PQclear(res);
        while ((res = PQgetResult(conn)))
            PQclear(res);
    }
    for (int i = 0; i < 3; i++)
        sc__jcols_free(&parts[i]);
    sc__jcols_free(&buf);
    PQfinish(conn);
}

/*
 * An event alone (`lone`) with its district goes as scalar parameters to the one-event
 * statement, every field whole, a NULL as NULL; without its district, as a batch of one to the
 * function, which finds it. Both statements are prepared here as ones that give their input back.
 */
static void test_an_event_alone_goes_as_one_row(void **state)
{
    (void)state;
    PGconn *conn = s_connect();
    PGresult *res = PQprepare(conn, "sc_journal_one",
                              "SELECT 'one', $1::text, $2::text, $3::text, $4::text, $5::text,"
                              " $6::timestamptz = '1970-01-01T00:00:00.000001Z', $7::timestamptz,"
                              " $8::text, $9::jsonb::text",
                              9, NULL);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQprepare(conn, "sc_journal_append",
                    "SELECT 'batch', cardinality($3::text[]) FROM (SELECT $1::text[], $2::text[],"
                    " $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[],"
                    " $9::jsonb[]) x",
                    9, NULL);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    sc__jcols_t one = {0}, buf = {0};
    sc__jentry_t e = {.type = "gate.entry",
                      .school = "s1",
                      .district = "d1",
                      .source = "gate-east",
                      .source_id = "x-1",
                      .occurred_at = 1,
                      .received_at = 946684800000000,
                      .data = "{\"n\": 1}",
                      .data_len = 8};
    assert_int_equal(sc__jcols_add(&one, &e), 0);
    const sc__jcols_t *order[2] = {&buf, &one}; /* an empty part first: the event is found */
    char err[256];
    assert_int_equal(sc__journal_send(conn, order, 2, &buf, true, err, sizeof err), 0);
    res = PQgetResult(conn);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    static const char *const want[] = {"one", "gate.entry", "s1", "d1", "gate-east",
                                       "x-1", "t",          NULL, NULL, "{\"n\": 1}"};
    for (int c = 0; c < 10; c++)
        if (want[c])
            assert_string_equal(PQgetvalue(res, 0, c), want[c]);
    assert_true(PQgetisnull(res, 0, 8)); /* no actor */
    PQclear(res);
    while ((res = PQgetResult(conn)))
        PQclear(res);

    /* Without its district, or not alone: the function. */
    for (int round = 0; round < 2; round++) {
        sc__jcols_reset(&one);
        e.district = round == 0 ? NULL : "d1";
        assert_int_equal(sc__jcols_add(&one, &e), 0);
        const sc__jcols_t *parts[1] = {&one};
        assert_int_equal(sc__journal_send(conn, parts, 1, &buf, round == 0, err, sizeof err), 0);
        res = PQgetResult(conn);
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(res, 0, 0), "batch");
        PQclear(res);
        while ((res = PQgetResult(conn)))
            PQclear(res);
    }
    sc__jcols_free(&one);
    sc__jcols_free(&buf);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_are_aligned_and_distinct),
        cmocka_unit_test(test_a_reset_keeps_one_block_the_size_of_the_last_fill),
        cmocka_unit_test(test_a_rollback_frees_what_came_after_the_mark),
        cmocka_unit_test(test_jansson_allocates_from_the_arena_in_use),
        cmocka_unit_test(test_columns_add_whole_entries_and_join_in_order),
        cmocka_unit_test(test_parts_reach_the_server_as_one_batch),
        cmocka_unit_test(test_an_event_alone_goes_as_one_row),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
