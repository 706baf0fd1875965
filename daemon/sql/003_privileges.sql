-- Least privilege. Migrations run as the owner (database.migrate_conninfo); the daemon runs
-- as a login role that is a member of safecampus_app (reads and writes rows, no DDL); reporting
-- tools log in as members of safecampus_report and see, through row-level security, only the
-- rows of the school or district they set:  SET app.school = 'sch-001'  /  SET app.district = …
--
-- The group roles are created here when the owner may create roles; otherwise a DBA creates
-- them (CREATE ROLE safecampus_app NOLOGIN; CREATE ROLE safecampus_report NOLOGIN) first.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'safecampus_app') THEN
        CREATE ROLE safecampus_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'safecampus_report') THEN
        CREATE ROLE safecampus_report NOLOGIN;
    END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL; -- another database of the cluster created them at the same moment
END $$;

-- The rows a reporting session may see: its school, or every school of its district.
-- SECURITY DEFINER: it reads core.schools, whose own policy calls it.
CREATE FUNCTION core.report_scope(p_school text, p_district text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT (p_school IS NOT NULL AND p_school = current_setting('app.school', true))
        OR (p_district IS NOT NULL AND p_district = current_setting('app.district', true))
        OR (p_school IS NOT NULL AND current_setting('app.district', true) <> ''
            AND EXISTS (SELECT 1 FROM core.schools s
                         WHERE s.school = p_school
                           AND s.district = current_setting('app.district', true)))
$$;

-- Grants and row-level security for every schema the owner has made: the core's and each
-- plugin's. Run by the daemon after every migration run, so a new plugin's tables are covered
-- the moment they exist. Tables with a `school` column are readable by reporting sessions for
-- their school or district; other tables are not readable by reporting roles at all.
CREATE FUNCTION core.apply_privileges() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    t record;
    has_district boolean;
BEGIN
    FOR s IN SELECT n.nspname FROM pg_namespace n
              WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('public', 'information_schema')
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO safecampus_app, safecampus_report', s.nspname);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO safecampus_app', s.nspname);
        EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO safecampus_app', s.nspname);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO safecampus_app', s.nspname);
        FOR t IN SELECT c.relname FROM pg_class c
                  WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = s.nspname)
                    AND c.relkind IN ('r', 'p')
                    AND EXISTS (SELECT 1 FROM pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'school' AND NOT a.attisdropped)
        LOOP
            has_district := EXISTS (SELECT 1 FROM pg_attribute a
                                     WHERE a.attrelid = format('%I.%I', s.nspname, t.relname)::regclass
                                       AND a.attname = 'district' AND NOT a.attisdropped);
            EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s.nspname, t.relname);
            EXECUTE format('GRANT SELECT ON %I.%I TO safecampus_report', s.nspname, t.relname);
            IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = s.nspname
                              AND tablename = t.relname AND policyname = 'app_all') THEN
                EXECUTE format('CREATE POLICY app_all ON %I.%I TO safecampus_app USING (true) WITH CHECK (true)',
                               s.nspname, t.relname);
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = s.nspname
                              AND tablename = t.relname AND policyname = 'report_scope') THEN
                EXECUTE format('CREATE POLICY report_scope ON %I.%I FOR SELECT TO safecampus_report'
                               ' USING (core.report_scope(school, %s))', s.nspname, t.relname,
                               CASE WHEN has_district THEN 'district' ELSE 'NULL' END);
            END IF;
        END LOOP;
    END LOOP;
END $$;
