/* The directory the core keeps for every plugin: validators of directory.* events and look-ups. */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_NAME_MAX 200

/* See sc__directory_epoch(). The epoch starts at 1: 0 means "in flight". */
static atomic_uint_fast64_t s_epoch = 1;
static atomic_int s_in_flight;

void sc__directory_sending(void)
{
    atomic_fetch_add(&s_epoch, 1);
    atomic_fetch_add(&s_in_flight, 1);
}

void sc__directory_sent(void)
{
    atomic_fetch_sub(&s_in_flight, 1);
}

uint64_t sc__directory_epoch(void)
{
    /* The epoch first: a batch sent between the two reads is then seen in flight. */
    uint64_t e = atomic_load(&s_epoch);
    return atomic_load(&s_in_flight) > 0 ? 0 : e;
}

/* Pupils are codes only: data naming a person or a national id is refused. */
static int s_no_names(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const banned[] = {"name",        "student_name", "full_name", "id_card",
                                         "national_id", "idcard",       NULL};
    for (size_t i = 0; banned[i]; i++)
        if (json_object_get(ev->data, banned[i]))
            return sc_fail(detail, dlen,
                           "data.%s: pupils are recorded by code only; names and national ids "
                           "are refused",
                           banned[i]);
    return 0;
}

static int s_district(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_code(ev->data, "data.", "district", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(ev->data, "data.", "name", true, S_NAME_MAX, detail, dlen)) < 0)
        return rc;
    if (!ev->district || ev->school)
        return sc_fail(detail, dlen, "district: required for %s (and no school)", ev->type);
    if (strcmp(ev->district, sc_json_str(ev->data, "district")) != 0)
        return sc_fail(detail, dlen, "data.district: must be the envelope's district");
    return 0;
}

static int s_school(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_string(ev->data, "data.", "name", true, S_NAME_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_code(ev->data, "data.", "district", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(ev->data, "data.", "timezone", false, 64, detail, dlen)) < 0)
        return rc;
    const char *tz = sc_json_str(ev->data, "timezone");
    if (tz && !sc_tz_known(tz))
        return sc_fail(detail, dlen, "data.timezone: \"%s\" is not a known time zone", tz);
    return 0;
}

static int s_class(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_code(ev->data, "data.", "class", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(ev->data, "data.", "head_teacher", false, detail, dlen)) < 0)
        return rc;
    const json_t *g = json_object_get(ev->data, "grade");
    if (!g)
        return sc_fail(detail, dlen, "data.grade: required");
    if (!(json_is_string(g) && json_string_length(g) > 0 && json_string_length(g) <= 32) &&
        !(json_is_integer(g) && json_integer_value(g) >= 0 && json_integer_value(g) <= 20))
        return sc_fail(detail, dlen, "data.grade: expected a grade (1 to 12, or a short name)");
    return 0;
}

static int s_person(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_code(ev->data, "data.", "person", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(ev->data, "data.", "name", true, S_NAME_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_array(ev->data, "data.", "roles", true, 32, detail, dlen)) < 0 ||
        (rc = sc_check_object(ev->data, "data.", "contacts", false, detail, dlen)) < 0)
        return rc;
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(ev->data, "roles"), i, r)
    {
        char key[32];
        snprintf(key, sizeof key, "roles[%zu]", i);
        if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 64 ||
            strspn(json_string_value(r), "abcdefghijklmnopqrstuvwxyz_") != json_string_length(r))
            return sc_fail(detail, dlen, "data.%s: expected a role name (lowercase, _)", key);
    }
    const json_t *contacts = json_object_get(ev->data, "contacts");
    if (contacts) {
        static const char *const known[] = {"email", "phone", "webhook", "dingtalk", "wecom", NULL};
        if ((rc = sc_check_known(contacts, "data.contacts.", known, detail, dlen)) < 0)
            return rc;
        for (size_t k = 0; known[k]; k++)
            if ((rc = sc_check_string(contacts, "data.contacts.", known[k], false, 512, detail,
                                      dlen)) < 0)
                return rc;
        const char *email = sc_json_str(contacts, "email");
        if (email && !strchr(email, '@'))
            return sc_fail(detail, dlen, "data.contacts.email: expected an email address");
    }
    if (!ev->school && !ev->district)
        return sc_fail(detail, dlen, "school: required (or district, for district staff)");
    return 0;
}

static int s_student(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = s_no_names(ev, detail, dlen)) < 0 ||
        (rc = sc_check_code(ev->data, "data.", "student", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(ev->data, "data.", "class", true, detail, dlen)) < 0)
        return rc;
    return 0;
}

static const struct sc_type s_types[] = {
    {"directory.district.upserted", SC_TYPE_DISTRICT, s_district},
    {"directory.school.upserted", 0, s_school},
    {"directory.class.upserted", 0, s_class},
    {"directory.person.upserted", SC_TYPE_DISTRICT, s_person},
    {"directory.student.upserted", 0, s_student},
};

size_t sc__directory_ntypes(void)
{
    return sizeof s_types / sizeof s_types[0];
}
const struct sc_type *sc__directory_type(size_t i)
{
    return &s_types[i];
}

/* Runs a look-up; returns the rows as JSON, or NULL on error (logged). */
static json_t *s_rows(PGconn *conn, const char *sql, int n, const char *const *params)
{
    int rc;
    PGresult *res = sc_pq_exec(conn, sql, n, params, &rc);
    if (!res) {
        SC__LOG(SC_LOG_WARNING, "directory", "look-up failed: %s", PQerrorMessage(conn));
        return NULL;
    }
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    return rows;
}

static json_t *s_first(json_t *rows)
{
    json_t *one = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return one;
}

json_t *sc__directory_people(PGconn *conn, const char *school, const char *district,
                             const char *role)
{
    const char *p[3] = {school, district, role};
    return s_rows(conn,
                  "SELECT person, name, school, district, to_jsonb(roles) AS roles, contacts"
                  "  FROM core.people"
                  " WHERE $3 = ANY (roles)"
                  "   AND (($1::text IS NOT NULL AND school = $1)"
                  "     OR ($1::text IS NULL AND school IS NULL AND district = $2))"
                  " ORDER BY person",
                  3, p);
}

json_t *sc__directory_school(PGconn *conn, const char *school, const char *default_tz)
{
    const char *p[2] = {school, default_tz};
    return s_first(s_rows(conn,
                          "SELECT school, name, district, coalesce(timezone, $2) AS timezone"
                          "  FROM core.schools WHERE school = $1",
                          2, p));
}

json_t *sc__directory_person(PGconn *conn, const char *person)
{
    const char *p[1] = {person};
    return s_first(s_rows(conn,
                          "SELECT person, name, school, district, to_jsonb(roles) AS roles,"
                          "       contacts FROM core.people WHERE person = $1",
                          1, p));
}

json_t *sc__directory_class(PGconn *conn, const char *school, const char *klass)
{
    const char *p[2] = {school, klass};
    return s_first(s_rows(conn,
                          "SELECT class, grade, head_teacher, school FROM core.classes"
                          " WHERE school = $1 AND class = $2",
                          2, p));
}

json_t *sc__directory_district_schools(PGconn *conn, const char *district, const char *default_tz)
{
    const char *p[2] = {district, default_tz};
    return s_rows(conn,
                  "SELECT school, name, district, coalesce(timezone, $2) AS timezone"
                  "  FROM core.schools WHERE district = $1 ORDER BY school",
                  2, p);
}
