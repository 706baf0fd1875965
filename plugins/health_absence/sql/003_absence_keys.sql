-- health_absence: one index for both ways an absence is found. Every look-up names school,
-- date and student, and every count names school and date; with (school, student, date) beside
-- (school, date), the planner took the shorter one for a single absence before the table's first
-- ANALYZE and read all of the school's absences that day for each report. Keyed as (school,
-- date, student), the unique index answers both, and an insert maintains one index less.
CREATE UNIQUE INDEX absences_day_student ON health.absences (school, date, student);
DROP INDEX health.absences_student_day;
DROP INDEX health.absences_school_day;
