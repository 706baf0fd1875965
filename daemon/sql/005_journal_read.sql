-- The read every plugin runner makes: its next events after its cursor, up to the head.
-- Run as a statement prepared once, its plan was the generic one made while the journal was
-- small: a bitmap scan of the whole id window, sorted, every row's data turned to text, where
-- the primary key in order stops after `p_limit` matches (4 ms against 0.5 ms a call on a
-- quiet machine, ten times that under load). Planned at each call here, with the settings
-- that leave the ordered index scan as the only way.
CREATE FUNCTION core.journal_read(p_after bigint, p_patterns text[], p_limit integer,
                                  p_upto bigint)
RETURNS TABLE (id bigint, type text, school text, district text, source text, source_id text,
               occurred_at timestamptz, received_at timestamptz, actor text, data text)
LANGUAGE sql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
    SELECT e.id, e.type, e.school, e.district, e.source, e.source_id, e.occurred_at,
           e.received_at, e.actor, e.data::text
      FROM core.events e
     WHERE e.id > p_after AND e.id <= p_upto AND e.type LIKE ANY (p_patterns)
     ORDER BY e.id
     LIMIT p_limit
$$;
