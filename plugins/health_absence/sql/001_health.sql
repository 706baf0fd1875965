-- health_absence: morning checks, absences and their tracing, clusters, EARS results, schedules.
CREATE SCHEMA health;

-- Schools the plugin has seen, with the time zone their local dates and times are read in.
CREATE TABLE health.schools (
    school text PRIMARY KEY,
    district text,
    timezone text NOT NULL,
    history_from date NOT NULL,          -- first local date with data: EARS baselines start here
    next_report_at timestamptz NOT NULL, -- the next daily report (a school day at report_time)
    last_report date                     -- the last local date reported
);

-- Districts of those schools: the roll-up is sent at report_time in the district's zone.
CREATE TABLE health.districts (
    district text PRIMARY KEY,
    timezone text NOT NULL,
    next_report_at timestamptz NOT NULL
);

-- 晨检: one row per class and school day; a later check for the same day replaces it.
CREATE TABLE health.morning_checks (
    id bigserial PRIMARY KEY,
    school text NOT NULL,
    class text NOT NULL,
    date date NOT NULL,
    present integer NOT NULL,
    absent integer NOT NULL,
    symptomatic integer,
    note text,
    event bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    UNIQUE (school, class, date)
);

-- One absence of one pupil (a code, never a name) on one day. student is NULL once anonymised.
CREATE TABLE health.absences (
    id bigserial PRIMARY KEY,
    school text NOT NULL,
    student text,
    class text NOT NULL,
    grade text,
    date date NOT NULL,
    reason text NOT NULL CHECK (reason IN ('illness', 'personal', 'unknown')),
    symptoms text[] NOT NULL DEFAULT '{}',
    syndromes text[] NOT NULL DEFAULT '{}', -- every syndrome the symptoms fit
    syndrome text,                           -- the one used for "similar symptoms" rules
    onset date,
    seen_doctor boolean,
    diagnosis text,
    disease text,                            -- suspected or confirmed infectious disease (code)
    note text,
    reported_event bigint NOT NULL,
    reported_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    trace_due timestamptz,                   -- NULL: nothing to trace
    traced_at timestamptz,
    traced_by text,
    untraced_at timestamptz,                 -- health.absence.untraced raised
    case_alerted text,                       -- disease last raised as health.case.suspected
    anonymised_at timestamptz
);
CREATE UNIQUE INDEX absences_student_day ON health.absences (school, student, date);
CREATE INDEX absences_school_day ON health.absences (school, date);
CREATE INDEX absences_trace_due ON health.absences (trace_due)
    WHERE traced_at IS NULL AND untraced_at IS NULL AND trace_due IS NOT NULL;

-- Suspected clusters: raised once, grown by further cases, closed after a quiet period.
CREATE TABLE health.clusters (
    id bigserial PRIMARY KEY,
    school text NOT NULL,
    district text,
    scope text NOT NULL CHECK (scope IN ('class', 'grade', 'school')),
    scope_key text NOT NULL,     -- the class, the grade or the school
    rule text NOT NULL,
    syndrome text,               -- the syndrome counted, or NULL for a disease rule
    disease text,                -- the disease counted, or NULL
    family text NOT NULL,        -- what inhibition compares: ili counts as respiratory
    window_days integer NOT NULL,
    threshold integer NOT NULL,
    cases integer NOT NULL,
    first_date date NOT NULL,
    last_date date NOT NULL,
    raised_at timestamptz NOT NULL,
    alerted boolean NOT NULL,    -- false: inhibited by a wider cluster
    inhibited_by bigint REFERENCES health.clusters (id) ON DELETE SET NULL,
    close_at timestamptz NOT NULL,
    closed_at timestamptz
);
CREATE INDEX clusters_open ON health.clusters (school, scope, scope_key, family) WHERE closed_at IS NULL;

CREATE TABLE health.cluster_cases (
    cluster bigint NOT NULL REFERENCES health.clusters (id) ON DELETE CASCADE,
    absence bigint NOT NULL REFERENCES health.absences (id) ON DELETE CASCADE,
    PRIMARY KEY (cluster, absence)
);

-- EARS results per school, day, measure (count or rate) and algorithm.
CREATE TABLE health.ears (
    id bigserial UNIQUE,
    school text NOT NULL,
    date date NOT NULL,
    measure text NOT NULL,
    algorithm text NOT NULL,
    observed double precision NOT NULL,
    expected double precision NOT NULL,
    sd double precision NOT NULL,
    statistic double precision NOT NULL,
    upper double precision NOT NULL,
    alarm boolean NOT NULL,
    PRIMARY KEY (school, date, measure, algorithm)
);

-- Plugin-wide scheduled jobs (retention).
CREATE TABLE health.jobs (
    job text PRIMARY KEY,
    next_at timestamptz NOT NULL
);

-- What each retention run removed or anonymised.
CREATE TABLE health.retention_runs (
    id bigserial PRIMARY KEY,
    ran_at timestamptz NOT NULL,
    cutoff date NOT NULL,
    mode text NOT NULL,
    absences integer NOT NULL,
    morning_checks integer NOT NULL
);

-- How the plugin writes times and dates in replies and events, whatever DateStyle says.
CREATE FUNCTION health.rfc3339(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;
CREATE FUNCTION health.ymd(d date) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT to_char(d, 'YYYY-MM-DD') $$;
