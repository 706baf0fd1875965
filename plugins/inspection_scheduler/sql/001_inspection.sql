-- inspection_scheduler: templates, schedules, seasons, closed days, tasks and their results.
CREATE SCHEMA inspection;

-- A checklist at a school: items [{item, text, category}] and the warning kinds that call it up.
CREATE TABLE inspection.templates (
    school text NOT NULL,
    template text NOT NULL,
    title text NOT NULL,
    area text,
    items jsonb NOT NULL,
    triggers text[] NOT NULL DEFAULT '{}',
    assignee_role text,
    event bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (school, template)
);

-- A recurring inspection: an RRULE in the school's time zone starting at dtstart (local wall
-- time), seasonal rules, exception dates. expanded_until: every occurrence at or before it has
-- its task; next_at: the next occurrence after it (NULL: to be computed, 'infinity': none).
CREATE TABLE inspection.schedules (
    school text NOT NULL,
    schedule text NOT NULL,
    template text NOT NULL,
    rrule text NOT NULL,
    dtstart text NOT NULL,
    assignee_role text,
    assignee text,
    due_within bigint NOT NULL,
    grace bigint NOT NULL,
    seasons jsonb NOT NULL DEFAULT '[]',
    exdates jsonb NOT NULL DEFAULT '[]',
    skip_closed boolean NOT NULL DEFAULT true,
    active boolean NOT NULL DEFAULT true,
    expanded_until timestamptz NOT NULL,
    next_at timestamptz,
    event bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (school, schedule)
);
CREATE INDEX schedules_next ON inspection.schedules (next_at) WHERE active;

-- Season dates a district set by event: year 0 every year (from/to "MM-DD"), otherwise that
-- year only (from/to "YYYY-MM-DD").
CREATE TABLE inspection.seasons (
    district text NOT NULL,
    season text NOT NULL,
    year integer NOT NULL,
    date_from text NOT NULL,
    date_to text NOT NULL,
    event bigint NOT NULL,
    PRIMARY KEY (district, season, year)
);

-- Days on which no scheduled task opens (holidays, vacations), per school or per district.
CREATE TABLE inspection.closed_days (
    scope text NOT NULL,          -- a school or a district code
    is_district boolean NOT NULL,
    calendar text NOT NULL,
    date_from date NOT NULL,
    date_to date NOT NULL,
    reason text,
    event bigint NOT NULL
);
CREATE INDEX closed_days_scope ON inspection.closed_days (scope, is_district);

-- One task per occurrence, alert or ad-hoc inspection. items: the template's items when the
-- task opened, so later edits of the template do not change what was asked.
CREATE TABLE inspection.tasks (
    id bigserial UNIQUE,
    school text NOT NULL,
    task text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('scheduled', 'alert', 'adhoc')),
    schedule text,
    template text NOT NULL,
    title text NOT NULL,
    area text,
    items jsonb NOT NULL,
    assignee_role text,
    assignee text,
    opens_at timestamptz NOT NULL,
    local_date date NOT NULL,
    due_at timestamptz NOT NULL,
    deadline timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'completed', 'missed')),
    completed_at timestamptz,
    inspector text,
    missed_at timestamptz,
    alert_kind text,
    alert_level text,
    source_event bigint,
    completion_event bigint,
    PRIMARY KEY (school, task)
);
CREATE UNIQUE INDEX tasks_occurrence ON inspection.tasks (school, schedule, opens_at)
    WHERE kind = 'scheduled';
CREATE INDEX tasks_open_deadline ON inspection.tasks (deadline) WHERE status = 'open';
CREATE INDEX tasks_school_date ON inspection.tasks (school, local_date);

-- One result per item of a completed task; hazard: the code raised for a failed item.
CREATE TABLE inspection.results (
    school text NOT NULL,
    task text NOT NULL,
    item text NOT NULL,
    status text NOT NULL CHECK (status IN ('ok', 'fail', 'na')),
    note text,
    photo text,
    hazard text,
    PRIMARY KEY (school, task, item),
    FOREIGN KEY (school, task) REFERENCES inspection.tasks (school, task)
);
