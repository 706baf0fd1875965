-- hazard_tracker: hazards_found (school, found_at) goes. The period queries bound found_at by
-- each row's own time zone, so it served them no better than the primary key's leading school;
-- and before the table's first ANALYZE the planner picked it for (school, hazard) look-ups — the
-- foreign key check of every history row among them — reading all of a school's hazards each time.
DROP INDEX hazard.hazards_found;
