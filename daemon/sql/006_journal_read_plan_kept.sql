-- core.journal_read with its plan kept for the session. As a SQL function with SET clauses
-- (005) it could not be inlined, so its body was parsed and planned at every call: most of the
-- cost of reading a few rows back, paid by a runner each time the journal's tail in memory did
-- not hold its next events. PL/pgSQL keeps the statement's plan for the session, and makes it
-- under the function's own settings, which leave the primary key in order as the only way to
-- the rows: the plan kept, generic or not, is that scan whatever the journal's size when it
-- was made.
CREATE OR REPLACE FUNCTION core.journal_read(p_after bigint, p_patterns text[], p_limit integer,
                                             p_upto bigint)
RETURNS TABLE (id bigint, type text, school text, district text, source text, source_id text,
               occurred_at timestamptz, received_at timestamptz, actor text, data text)
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT e.id, e.type, e.school, e.district, e.source, e.source_id, e.occurred_at,
           e.received_at, e.actor, e.data::text
      FROM core.events e
     WHERE e.id > p_after AND e.id <= p_upto AND e.type LIKE ANY (p_patterns)
     ORDER BY e.id
     LIMIT p_limit;
END $$;
