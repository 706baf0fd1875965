-- health_absence: what lets one statement apply one event — the next school-day instant in SQL,
-- and date formatting the planner can inline.

-- The first instant at local time p_hhmm on an ISO weekday of p_days, on or after local date
-- p_from, that is later than p_after. Starting no earlier than the day before p_after's local
-- date, sixteen days always hold such an instant when any weekday is a school day; none found
-- would mean no weekday at all, which init refuses, so it is an error rather than a NULL.
-- PL/pgSQL, not SQL: its plan is kept for the session instead of being made at every call.
CREATE FUNCTION health.next_local(p_from date, p_hhmm time, p_tz text, p_days int[],
                                  p_after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_start date := greatest(p_from, (p_after AT TIME ZONE p_tz)::date - 1);
    v_next timestamptz;
BEGIN
    SELECT min(x) INTO v_next
      FROM (SELECT ((g::date + p_hhmm) AT TIME ZONE p_tz) AS x
              FROM generate_series(v_start::timestamp, (v_start + 15)::timestamp,
                                   interval '1 day') g
             WHERE extract(isodow FROM g)::int = ANY (p_days)) s
     WHERE x > p_after;
    IF v_next IS NULL THEN
        RAISE EXCEPTION 'no day of % after %', p_days, p_after;
    END IF;
    RETURN v_next;
END $$;

-- to_char is stable, not immutable (its output may follow the session's settings, and a date
-- reaches it through the session's zone), and PostgreSQL inlines a SQL function only when its
-- body is no more volatile than the function says: declared immutable, these two ran as
-- function calls, each planned anew, twice per event. Their results are the same either way.
ALTER FUNCTION health.ymd(date) STABLE;
ALTER FUNCTION health.rfc3339(timestamptz) STABLE;
