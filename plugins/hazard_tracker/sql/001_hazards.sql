-- hazard_tracker: the hazard-rectification ledger (隐患排查整改台帐): hazards and their history.
CREATE SCHEMA hazard;

-- One row per hazard, its current state. Rows are never deleted: a wrong report
-- ends as state 'withdrawn'. Every change is also written to hazard.history.
CREATE TABLE hazard.hazards (
    school text NOT NULL,
    hazard text NOT NULL,
    district text,
    timezone text NOT NULL,          -- the school's zone when reported: dates are read in it
    title text NOT NULL,
    description text,
    location text,
    category text NOT NULL CHECK (category IN ('building', 'electrical', 'fire', 'equipment',
                                               'surroundings', 'food_water', 'traffic', 'other')),
    risk text NOT NULL CHECK (risk IN ('general', 'major')),
    reporter text,
    found_at timestamptz NOT NULL,
    reported_at timestamptz NOT NULL,
    origin jsonb NOT NULL,           -- {"kind":"person"|"inspection"|"external", task, item, …}
    attachments jsonb NOT NULL DEFAULT '[]',
    report_event bigint NOT NULL,    -- core.events.id of the hazard.reported
    report_data jsonb NOT NULL,      -- its data, to recognise an identical re-report
    state text NOT NULL CHECK (state IN ('reported', 'assigned', 'rectified', 'closed',
                                         'withdrawn')),
    assignee text,
    assigned_by text,
    assigned_at timestamptz,
    -- The deadline in force. Each new deadline (a changed one, a reopening) is a new
    -- round: its overdue is raised once and its reminders counted afresh.
    round integer NOT NULL DEFAULT 1,
    deadline timestamptz NOT NULL,
    deadline_given boolean NOT NULL, -- false: from the risk's default
    overdue_at timestamptz,          -- this round's hazard.overdue was raised (due instant)
    next_reminder_at timestamptz,    -- next hazard.reminder of this round
    reminders_sent integer NOT NULL DEFAULT 0,
    rectified_by text,
    rectified_at timestamptz,
    measures text,                   -- measures taken (last rectification)
    evidence jsonb,
    verified_by text,
    verified_at timestamptz,
    closed_at timestamptz,
    withdrawn_by text,
    withdrawn_at timestamptz,
    withdrawn_reason text,
    -- 五落实: the five commitments a major hazard needs before it can be closed.
    c_measures text,
    c_responsible text,
    c_funds text,
    c_time_limit timestamptz,
    c_emergency_plan text,
    interim_measures text,           -- 临时防范措施 while a major hazard stays open
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (school, hazard)
);

CREATE INDEX hazards_due ON hazard.hazards (deadline)
    WHERE state IN ('reported', 'assigned') AND overdue_at IS NULL;
CREATE INDEX hazards_reminder ON hazard.hazards (next_reminder_at)
    WHERE next_reminder_at IS NOT NULL;
CREATE INDEX hazards_district ON hazard.hazards (district, state);
CREATE INDEX hazards_found ON hazard.hazards (school, found_at);

-- Append-only: every transition with who and when, plus overdue and reminders.
CREATE TABLE hazard.history (
    seq bigserial PRIMARY KEY,
    school text NOT NULL,
    hazard text NOT NULL,
    at timestamptz NOT NULL,         -- when it happened (the event's occurred_at, or the due instant)
    recorded_at timestamptz NOT NULL,
    event bigint,                    -- core.events.id, NULL for what tick raised
    action text NOT NULL CHECK (action IN ('reported', 'assigned', 'reassigned', 'rectified',
                                           'verified', 'reopened', 'withdrawn', 'commitments',
                                           'overdue', 'reminder')),
    state_from text,
    state_to text NOT NULL,
    actor text,
    round integer NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (school, hazard) REFERENCES hazard.hazards (school, hazard)
);

CREATE INDEX history_hazard ON hazard.history (school, hazard, seq);
CREATE INDEX history_at ON hazard.history (school, at);

CREATE FUNCTION hazard.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hazard ledger: % on % is not allowed (the ledger is append-only)',
        TG_OP, TG_TABLE_NAME;
END
$$;

CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON hazard.history
    FOR EACH ROW EXECUTE FUNCTION hazard.refuse_change();
CREATE TRIGGER history_no_truncate BEFORE TRUNCATE ON hazard.history
    FOR EACH STATEMENT EXECUTE FUNCTION hazard.refuse_change();
CREATE TRIGGER hazards_no_delete BEFORE DELETE ON hazard.hazards
    FOR EACH ROW EXECUTE FUNCTION hazard.refuse_change();
CREATE TRIGGER hazards_no_truncate BEFORE TRUNCATE ON hazard.hazards
    FOR EACH STATEMENT EXECUTE FUNCTION hazard.refuse_change();

-- RFC 3339 in UTC ("2026-06-18T00:15:00Z"), whatever the session's zone.
CREATE FUNCTION hazard.rfc3339(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IS NULL THEN NULL
                WHEN date_trunc('second', t) = t
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
$$;

-- Local wall-clock text for the ledger export ("2026-06-18 08:15").
CREATE FUNCTION hazard.local_text(t timestamptz, tz text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI')
$$;

-- Which of the five commitments (五落实) a hazard still lacks, as a JSON array.
CREATE FUNCTION hazard.missing(h hazard.hazards) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(array_remove(ARRAY[
        CASE WHEN h.c_measures IS NULL THEN 'measures' END,
        CASE WHEN h.c_responsible IS NULL THEN 'responsible' END,
        CASE WHEN h.c_funds IS NULL THEN 'funds' END,
        CASE WHEN h.c_time_limit IS NULL THEN 'time_limit' END,
        CASE WHEN h.c_emergency_plan IS NULL THEN 'emergency_plan' END], NULL))
$$;
