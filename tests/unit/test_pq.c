/* Unit tests: sc_pq_exec prepares each statement once per connection, sc_pq_exec_fresh never
 * (lib/pq.c); rows written as JSON text for a statement's parameter (lib/pqbuf.c). */
#include <safecampus/util.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *s_connect(void)
{
    const char *conninfo = getenv("SC_TEST_CONNINFO");
    if (!conninfo)
        fail_msg("SC_TEST_CONNINFO is not set (run through make test)");
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("could not connect: %s", PQerrorMessage(conn));
    return conn;
}

/* How many statements the server holds prepared for this session whose text is `sql`. */
static int s_prepared(PGconn *conn, const char *sql)
{
    const char *p[1] = {sql};
    PGresult *res = PQexecParams(conn,
                                 "SELECT count(*) FROM pg_prepared_statements"
                                 " WHERE statement = $1",
                                 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    int n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

static const char *const s_sql = "SELECT $1::int + 1";

static int s_run(PGconn *conn, const char *arg)
{
    const char *p[1] = {arg};
    int rc = 1;
    PGresult *res = sc_pq_exec(conn, s_sql, 1, p, &rc);
    if (!res)
        return rc;
    int v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void test_prepares_once_and_answers_as_before(void **state)
{
    (void)state;
    PGconn *conn = s_connect();
    assert_int_equal(s_prepared(conn, s_sql), 0);
    assert_int_equal(s_run(conn, "1"), 2);
    assert_int_equal(s_prepared(conn, s_sql), 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(s_run(conn, "41"), 42);
    assert_int_equal(s_prepared(conn, s_sql), 1); /* once, however often it runs */
    /* A value error is the execution's, and the statement stays usable. */
    assert_int_equal(s_run(conn, "x"), -EIO);
    assert_int_equal(s_run(conn, "2"), 3);
    PQfinish(conn);
}

static void test_a_new_connection_starts_afresh(void **state)
{
    (void)state;
    /* Whatever address the new connection gets, it has none of the old one's statements. */
    for (int i = 0; i < 3; i++) {
        PGconn *conn = s_connect();
        assert_int_equal(s_run(conn, "5"), 6);
        assert_int_equal(s_prepared(conn, s_sql), 1);
        PQfinish(conn);
    }
}

static void test_a_statement_that_does_not_parse_says_why(void **state)
{
    (void)state;
    PGconn *conn = s_connect();
    int rc = 0;
    PGresult *res = sc_pq_exec(conn, "SELECT * FROM no_such_table_here", 0, NULL, &rc);
    assert_null(res);
    assert_int_equal(rc, -EIO);
    assert_non_null(strstr(PQerrorMessage(conn), "no_such_table_here"));
    /* Inside a failed transaction it is not prepared either, and reports the failure. */
    PQclear(PQexec(conn, "BEGIN"));
    assert_null(sc_pq_exec(conn, "SELECT 1/0", 0, NULL, &rc));
    assert_int_equal(s_run(conn, "1"), -EIO);
    PQclear(PQexec(conn, "ROLLBACK"));
    assert_int_equal(s_run(conn, "1"), 2);
    /* Prepared statements dropped behind its back: it says so once, then prepares again. */
    PQclear(PQexec(conn, "DEALLOCATE ALL"));
    assert_int_equal(s_run(conn, "1"), -EIO);
    assert_int_equal(s_run(conn, "1"), 2);
    PQfinish(conn);
}

/* sc_pq_exec_fresh answers the same and leaves nothing prepared: it is planned at each run. */
static void test_fresh_runs_are_never_prepared(void **state)
{
    (void)state;
    PGconn *conn = s_connect();
    const char *p[1] = {"41"};
    for (int i = 0; i < 3; i++) {
        int rc = 1;
        PGresult *res = sc_pq_exec_fresh(conn, s_sql, 1, p, &rc);
        assert_non_null(res);
        assert_int_equal(rc, 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "42");
        PQclear(res);
    }
    assert_int_equal(s_prepared(conn, s_sql), 0);
    int rc = 0;
    assert_null(sc_pq_exec_fresh(conn, "SELEKT 1", 0, NULL, &rc));
    assert_int_equal(rc, -EIO);
    PQfinish(conn);
}

/*
 * Rows written member by member as JSON text read back as the values written: strings with
 * quotes, backslashes, control characters and CJK, NULL as null, raw numbers and booleans, a
 * jansson value; a slice of the rows (the second alone) is an array of its own.
 */
static void test_json_rows_read_back_as_written(void **state)
{
    (void)state;
    sc_pqbuf_t rows = {0}, out = {0};
    json_t *list = json_pack("[s, i]", "a", 2);
    assert_int_equal(sc_pqbuf_put(&rows, "{", 1), 0);
    assert_int_equal(sc_pqbuf_json_member(&rows, "text", "\"q\" \\ \n\t\001 安全"), 0);
    assert_int_equal(sc_pqbuf_json_member(&rows, "none", NULL), 0);
    assert_int_equal(sc_pqbuf_json_member_raw(&rows, "n", "42"), 0);
    assert_int_equal(sc_pqbuf_json_member_value(&rows, "list", list), 0);
    assert_int_equal(sc_pqbuf_json_row_end(&rows), 0);
    size_t second = rows.len;
    assert_int_equal(sc_pqbuf_put(&rows, "{", 1), 0);
    assert_int_equal(sc_pqbuf_json_member_raw(&rows, "b", "true"), 0);
    assert_int_equal(sc_pqbuf_json_row_end(&rows), 0);

    assert_int_equal(sc_pqbuf_json_rows(&out, rows.p, rows.len), 0);
    json_error_t err;
    json_t *got = json_loads(out.p, 0, &err);
    if (!got)
        fail_msg("not JSON (%s): %s", err.text, out.p);
    json_t *want = json_pack("[{s:s, s:n, s:i, s:O}, {s:b}]", "text", "\"q\" \\ \n\t\001 安全",
                             "none", "n", 42, "list", list, "b", 1);
    assert_true(json_equal(got, want));
    json_decref(got);

    assert_int_equal(sc_pqbuf_json_rows(&out, rows.p + second, rows.len - second), 0);
    assert_string_equal(out.p, "[{\"b\":true}]");
    assert_int_equal(out.len, strlen(out.p));
    /* An empty object still closes. */
    rows.len = 0;
    assert_int_equal(sc_pqbuf_put(&rows, "{", 1), 0);
    assert_int_equal(sc_pqbuf_json_row_end(&rows), 0);
    assert_int_equal(sc_pqbuf_json_rows(&out, rows.p, rows.len), 0);
    assert_string_equal(out.p, "[{}]");

    json_decref(want);
    json_decref(list);
    sc_pqbuf_free(&rows);
    sc_pqbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepares_once_and_answers_as_before),
        cmocka_unit_test(test_a_new_connection_starts_afresh),
        cmocka_unit_test(test_a_statement_that_does_not_parse_says_why),
        cmocka_unit_test(test_fresh_runs_are_never_prepared),
        cmocka_unit_test(test_json_rows_read_back_as_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
