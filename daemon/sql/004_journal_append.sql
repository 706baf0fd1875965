-- A leaner core.journal_append: the contract of 001_core.sql at a fraction of the
-- work per call (one row: about a sixth). Ids come from nextval in input order
-- under the journal's lock, so they still follow commit order; a row refused
-- by the unique key leaves a gap in the numbers, which no reader minds (a
-- cursor means "every id up to N", not a count). A batch without duplicates is
-- answered with the ids the INSERT returned; only one holding a duplicate
-- looks its keys up again.
CREATE OR REPLACE FUNCTION core.journal_append(
    p_type text[], p_school text[], p_district text[], p_source text[], p_source_id text[],
    p_occurred timestamptz[], p_received timestamptz[], p_actor text[], p_data jsonb[])
RETURNS TABLE (event bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids   bigint[];
    v_dup   boolean[];
    v_first bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7600002);

    -- Without a district from the caller, the school's (a school's own upsert
    -- names it). The daemon's writer passes the districts it knows, so this
    -- costs a statement only for a school it has not seen.
    IF array_position(p_district, NULL) IS NOT NULL THEN
        SELECT array_agg(coalesce(u.district, s.district,
                                  CASE WHEN u.type = 'directory.school.upserted'
                                       THEN u.data->>'district' END) ORDER BY u.ord)
          INTO p_district
          FROM unnest(p_type, p_school, p_district, p_data)
               WITH ORDINALITY AS u(type, school, district, data, ord)
          LEFT JOIN core.schools s ON s.school = u.school;
    END IF;

    -- A plain scan of the arrays, so nextval runs in input order.
    WITH ins AS (
        INSERT INTO core.events (id, type, school, district, source, source_id, occurred_at,
                                 received_at, actor, data)
        SELECT nextval('core.events_id_seq'), u.*
          FROM unnest(p_type, p_school, p_district, p_source, p_source_id, p_occurred,
                      p_received, p_actor, p_data) AS u
        ON CONFLICT (source, source_id) DO NOTHING
        RETURNING id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_ids FROM ins;

    IF cardinality(v_ids) < coalesce(cardinality(p_type), 0) THEN
        -- A keyed row is a duplicate when its key's event is older than this
        -- call's first id, or belongs to an earlier row of the batch. The rows
        -- that are not take this call's ids in order.
        v_first := coalesce(v_ids[1], 9223372036854775807);
        WITH k AS (
            SELECT u.ord, e.id AS key_id,
                   coalesce(u.source_id IS NOT NULL
                            AND (e.id < v_first
                                 OR min(u.ord) OVER (PARTITION BY u.source, u.source_id)
                                    <> u.ord), false) AS dup
              FROM unnest(p_source, p_source_id) WITH ORDINALITY AS u(source, source_id, ord)
              LEFT JOIN core.events e ON e.source = u.source AND e.source_id = u.source_id
        ), r AS (
            SELECT ord, key_id, dup,
                   count(*) FILTER (WHERE NOT dup) OVER (ORDER BY ord) AS rank
              FROM k
        )
        SELECT array_agg(CASE WHEN dup THEN key_id ELSE v_ids[rank::integer] END ORDER BY ord),
               array_agg(dup ORDER BY ord)
          INTO v_ids, v_dup
          FROM r;
    END IF;

    -- The directory is applied in the journal's own transaction, so a plugin
    -- never sees an event before the directory entries sent ahead of it. The
    -- test is a plain expression, so a batch without any costs no statement.
    IF strpos(array_to_string(p_type, ' '), 'directory.') > 0 THEN
        PERFORM core.directory_apply(t.type, t.school, t.district, t.data, t.occurred)
           FROM unnest(p_type, p_school, p_district, p_data, p_occurred)
                WITH ORDINALITY AS t(type, school, district, data, occurred, ord)
          WHERE t.type LIKE 'directory.%' AND NOT coalesce(v_dup[t.ord], false);
    END IF;

    IF v_dup IS NULL THEN
        RETURN QUERY SELECT x.id, false FROM unnest(v_ids) AS x(id);
    ELSE
        RETURN QUERY SELECT x.id, x.dup FROM unnest(v_ids, v_dup) AS x(id, dup);
    END IF;
END $$;
