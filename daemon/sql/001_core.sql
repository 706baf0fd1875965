-- The core: the journal, the directory, plugin cursors and dead letters.

CREATE SCHEMA IF NOT EXISTS core;

CREATE SEQUENCE core.events_id_seq;

-- The journal. Ids are assigned in commit order (see core.journal_append), so a
-- reader that has seen id N has seen every id below it.
CREATE TABLE core.events (
    id          bigint PRIMARY KEY,
    type        text NOT NULL,
    school      text,
    district    text,
    source      text NOT NULL,
    source_id   text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    actor       text,
    data        jsonb NOT NULL
);
ALTER SEQUENCE core.events_id_seq OWNED BY core.events.id;
CREATE UNIQUE INDEX events_source_key ON core.events (source, source_id);
CREATE INDEX events_school_time ON core.events (school, occurred_at);
CREATE INDEX events_district_time ON core.events (district, occurred_at);

-- The directory: districts, schools, classes, people, students (codes only).
CREATE TABLE core.districts (
    district   text PRIMARY KEY,
    name       text NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE core.schools (
    school     text PRIMARY KEY,
    name       text NOT NULL,
    district   text NOT NULL,
    timezone   text,
    data       jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schools_district ON core.schools (district);

CREATE TABLE core.classes (
    school       text NOT NULL,
    class        text NOT NULL,
    grade        text NOT NULL,
    head_teacher text,
    data         jsonb NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school, class)
);

-- A person belongs to a school, or (district staff) to a district only.
CREATE TABLE core.people (
    person     text PRIMARY KEY,
    name       text NOT NULL,
    school     text,
    district   text,
    roles      text[] NOT NULL DEFAULT '{}',
    contacts   jsonb NOT NULL DEFAULT '{}',
    data       jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_school ON core.people (school);
CREATE INDEX people_district ON core.people (district);
CREATE INDEX people_roles ON core.people USING gin (roles);

CREATE TABLE core.students (
    school     text NOT NULL,
    student    text NOT NULL,
    class      text NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school, student)
);

-- Where each plugin has got to in the journal; moved in the plugin's own transaction.
CREATE TABLE core.cursors (
    plugin     text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a plugin gave up on after its retries, with the error.
CREATE TABLE core.dead_letters (
    id         bigserial PRIMARY KEY,
    plugin     text NOT NULL,
    event      bigint NOT NULL,
    attempts   integer NOT NULL,
    error      text NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_plugin ON core.dead_letters (plugin, event);

-- Applies one directory event. Called for newly journaled events only.
CREATE FUNCTION core.directory_apply(p_type text, p_school text, p_district text, p_data jsonb,
                                     p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CASE p_type
    WHEN 'directory.district.upserted' THEN
        INSERT INTO core.districts AS d (district, name, data, updated_at)
        VALUES (p_data->>'district', p_data->>'name', p_data, p_at)
        ON CONFLICT (district) DO UPDATE
            SET name = EXCLUDED.name, data = EXCLUDED.data, updated_at = EXCLUDED.updated_at;
    WHEN 'directory.school.upserted' THEN
        INSERT INTO core.schools AS s (school, name, district, timezone, data, updated_at)
        VALUES (p_school, p_data->>'name', p_data->>'district', p_data->>'timezone', p_data, p_at)
        ON CONFLICT (school) DO UPDATE
            SET name = EXCLUDED.name, district = EXCLUDED.district,
                timezone = EXCLUDED.timezone, data = EXCLUDED.data,
                updated_at = EXCLUDED.updated_at;
    WHEN 'directory.class.upserted' THEN
        INSERT INTO core.classes (school, class, grade, head_teacher, data, updated_at)
        VALUES (p_school, p_data->>'class', p_data->>'grade', p_data->>'head_teacher', p_data, p_at)
        ON CONFLICT (school, class) DO UPDATE
            SET grade = EXCLUDED.grade, head_teacher = EXCLUDED.head_teacher,
                data = EXCLUDED.data, updated_at = EXCLUDED.updated_at;
    WHEN 'directory.person.upserted' THEN
        INSERT INTO core.people (person, name, school, district, roles, contacts, data, updated_at)
        VALUES (p_data->>'person', p_data->>'name', p_school,
                coalesce(p_district, (SELECT district FROM core.schools WHERE school = p_school)),
                ARRAY(SELECT jsonb_array_elements_text(p_data->'roles')),
                coalesce(p_data->'contacts', '{}'), p_data, p_at)
        ON CONFLICT (person) DO UPDATE
            SET name = EXCLUDED.name, school = EXCLUDED.school, district = EXCLUDED.district,
                roles = EXCLUDED.roles, contacts = EXCLUDED.contacts, data = EXCLUDED.data,
                updated_at = EXCLUDED.updated_at;
    WHEN 'directory.student.upserted' THEN
        INSERT INTO core.students (school, student, class, data, updated_at)
        VALUES (p_school, p_data->>'student', p_data->>'class', p_data, p_at)
        ON CONFLICT (school, student) DO UPDATE
            SET class = EXCLUDED.class, data = EXCLUDED.data, updated_at = EXCLUDED.updated_at;
    ELSE
        NULL;
    END CASE;
END $$;

-- Journals a batch of events in one statement (and so, in autocommit, one
-- transaction). Every writer goes through here under one transaction-level lock,
-- so ids are handed out in commit order. A (source, source_id) already in the
-- journal, or earlier in the batch, is answered as a duplicate with the
-- original id and not stored again. Returns one row per input, in input order.
CREATE FUNCTION core.journal_append(
    p_type text[], p_school text[], p_district text[], p_source text[], p_source_id text[],
    p_occurred timestamptz[], p_received timestamptz[], p_actor text[], p_data jsonb[])
RETURNS TABLE (event bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_base  bigint;
    v_ids   bigint[];
    v_dup   boolean[];
    v_new   integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7600002);
    v_base := nextval('core.events_id_seq');

    WITH u AS (
        SELECT * FROM unnest(p_type, p_school, p_district, p_source, p_source_id, p_occurred,
                             p_received, p_actor, p_data)
            WITH ORDINALITY AS u(type, school, district, source, source_id, occurred_at,
                                 received_at, actor, data, ord)
    ), c AS (
        SELECT u.*, e.id AS old_id,
               CASE WHEN u.source_id IS NULL THEN u.ord
                    ELSE min(u.ord) OVER (PARTITION BY u.source, u.source_id) END AS first_ord
          FROM u LEFT JOIN core.events e ON e.source = u.source AND e.source_id = u.source_id
    ), r AS (
        SELECT c.*, (c.old_id IS NULL AND c.first_ord = c.ord) AS is_new,
               count(*) FILTER (WHERE c.old_id IS NULL AND c.first_ord = c.ord)
                   OVER (ORDER BY c.ord) AS rank
          FROM c
    ), ids AS (
        SELECT r.*, CASE WHEN r.is_new THEN v_base + r.rank - 1 ELSE r.old_id END AS own_id
          FROM r
    ), ins AS (
        INSERT INTO core.events (id, type, school, district, source, source_id, occurred_at,
                                 received_at, actor, data)
        SELECT i.own_id, i.type, i.school,
               coalesce(i.district, s.district,
                        CASE WHEN i.type = 'directory.school.upserted'
                             THEN i.data->>'district' END),
               i.source, i.source_id, i.occurred_at, i.received_at, i.actor, i.data
          FROM ids i LEFT JOIN core.schools s ON s.school = i.school
         WHERE i.is_new
         ORDER BY i.ord
        RETURNING 1
    )
    SELECT array_agg(coalesce(a.own_id, f.own_id) ORDER BY a.ord),
           array_agg(NOT a.is_new ORDER BY a.ord),
           (SELECT count(*) FROM ins)
      INTO v_ids, v_dup, v_new
      FROM ids a LEFT JOIN ids f ON f.ord = a.first_ord AND a.first_ord <> a.ord;

    IF v_new > 1 THEN
        PERFORM setval('core.events_id_seq', v_base + v_new - 1);
    END IF;

    -- The directory is applied in the journal's own transaction, so a plugin
    -- never sees an event before the directory entries sent ahead of it.
    PERFORM core.directory_apply(t.type, t.school, t.district, t.data, t.occurred)
       FROM unnest(p_type, p_school, p_district, p_data, p_occurred, v_dup)
            AS t(type, school, district, data, occurred, dup)
      WHERE NOT t.dup AND t.type LIKE 'directory.%';

    RETURN QUERY SELECT * FROM unnest(v_ids, v_dup);
END $$;

-- The manual clock's time, so a daemon restarted in a test resumes where it was.
CREATE TABLE core.clock (
    id  integer PRIMARY KEY CHECK (id = 1),
    now timestamptz NOT NULL
);
