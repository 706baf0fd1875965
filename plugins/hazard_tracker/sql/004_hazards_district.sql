-- hazard_tracker: hazards_district indexes the district alone. With the state second in it,
-- the planner took it, before the table's first ANALYZE, for the tick's "state IN (reported,
-- assigned)" scans, reading every open hazard's index entry at each tick (12-40 ms a tick at
-- 50 000 hazards); the look-ups by district filter on state cheaply among a district's rows.
DROP INDEX hazard.hazards_district;
CREATE INDEX hazards_district ON hazard.hazards (district);
