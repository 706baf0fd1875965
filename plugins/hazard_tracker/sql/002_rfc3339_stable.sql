-- hazard_tracker: hazard.rfc3339 declared STABLE, as what it calls is (to_char, date_trunc of a
-- timestamptz). Declared IMMUTABLE over a body that is not, the planner never inlined it: every
-- call ran the body as a function of its own, a noticeable share of writing a history row.
ALTER FUNCTION hazard.rfc3339(timestamptz) STABLE;
