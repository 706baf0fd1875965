-- incident_escalation: incidents and alerts, their escalation levels, targets, notifications,
-- timelines, drills (for inhibition), silences and suppressed alarms.
CREATE SCHEMA incident;

-- One numbering for everything the ledger export pages through.
CREATE SEQUENCE incident.ledger_seq;

-- Local RFC 3339 text of t in time zone tz ("2026-06-18T08:15:00+08:00").
CREATE FUNCTION incident.rfc3339(t timestamptz, tz text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN t IS NULL THEN NULL ELSE
        to_char(t AT TIME ZONE tz, 'YYYY-MM-DD"T"HH24:MI:SS') ||
        CASE WHEN o = interval '0' THEN 'Z'
             WHEN o < interval '0' THEN '-' || to_char(-o, 'HH24:MI')
             ELSE '+' || to_char(o, 'HH24:MI') END
    END
    FROM (SELECT (t AT TIME ZONE tz) - (t AT TIME ZONE 'UTC') AS o) x
$$;

-- An escalation: a reported incident, a fire alarm turned incident, or an alert raised by
-- another plugin. `chain` is the policy that governs it (levels, immediate, report rules).
CREATE TABLE incident.escalations (
    code text PRIMARY KEY,
    seq bigint NOT NULL DEFAULT nextval('incident.ledger_seq'),
    sort text NOT NULL CHECK (sort IN ('incident', 'alert')),
    origin text NOT NULL,
    school text,
    district text,
    tz text NOT NULL,
    class text,
    kind text,
    severity text CHECK (severity IN ('I', 'II', 'III', 'IV')),
    dead integer NOT NULL DEFAULT 0,
    injured integer NOT NULL DEFAULT 0,
    location text,
    summary text,
    reporter text,
    subject text,
    group_key text,
    count integer NOT NULL DEFAULT 1,
    policy text NOT NULL,
    chain jsonb NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    opened_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_ack_at timestamptz,
    resolved_at timestamptz,
    resolved_by text,
    resolution text,
    report_due_at timestamptz,
    report_next_at timestamptz,
    report_chases integer NOT NULL DEFAULT 0,
    report_submitted_at timestamptz,
    report_by text,
    report_summary text,
    opened_event bigint
);
CREATE INDEX ON incident.escalations (group_key) WHERE status <> 'resolved';
CREATE INDEX ON incident.escalations (school, occurred_at);
CREATE INDEX ON incident.escalations (district, occurred_at);
CREATE INDEX ON incident.escalations (report_next_at)
    WHERE report_submitted_at IS NULL AND report_next_at IS NOT NULL;

-- Each level that has been told: its acknowledgement deadline and repeat timer.
CREATE TABLE incident.levels (
    code text NOT NULL REFERENCES incident.escalations ON DELETE CASCADE,
    level integer NOT NULL,
    roles jsonb NOT NULL,
    cause text NOT NULL,
    told_at timestamptz NOT NULL,
    ack_due timestamptz NOT NULL,
    deadline_done boolean NOT NULL DEFAULT false,
    acked_at timestamptz,
    acked_by text,
    next_repeat_at timestamptz,
    repeats integer NOT NULL DEFAULT 0,
    PRIMARY KEY (code, level)
);
CREATE INDEX ON incident.levels (ack_due) WHERE acked_at IS NULL AND NOT deadline_done;
CREATE INDEX ON incident.levels (next_repeat_at) WHERE acked_at IS NULL;

-- The people told at each level.
CREATE TABLE incident.targets (
    code text NOT NULL,
    level integer NOT NULL,
    person text NOT NULL,
    role text NOT NULL,
    told_at timestamptz NOT NULL,
    acked_at timestamptz,
    unreachable_at timestamptz,
    unreachable text,
    PRIMARY KEY (code, level, person),
    FOREIGN KEY (code, level) REFERENCES incident.levels ON DELETE CASCADE
);

-- Every notification.requested raised, so notification.failed can be traced back.
CREATE TABLE incident.notifications (
    notification text PRIMARY KEY,
    code text NOT NULL REFERENCES incident.escalations ON DELETE CASCADE,
    level integer NOT NULL,
    person text NOT NULL,
    channel text NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('escalation', 'repeat', 'report', 'resolved')),
    n integer NOT NULL,
    requested_at timestamptz NOT NULL,
    failed_at timestamptz,
    reason text
);
CREATE INDEX ON incident.notifications (code, level, person, n);

-- Everything that happened to an escalation, in order.
CREATE TABLE incident.timeline (
    id bigserial PRIMARY KEY,
    code text NOT NULL REFERENCES incident.escalations ON DELETE CASCADE,
    at timestamptz NOT NULL,
    what text NOT NULL,
    level integer,
    person text,
    detail jsonb NOT NULL DEFAULT '{}',
    event bigint
);
CREATE INDEX ON incident.timeline (code, at, id);

-- Drills as the ledger plugin reports them: scheduled windows and actual runs.
CREATE TABLE incident.drills (
    school text NOT NULL,
    drill text NOT NULL,
    kind text,
    starts_at timestamptz,
    ends_at timestamptz,
    started_at timestamptz,
    ended_at timestamptz,
    cancelled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (school, drill)
);

-- Silences: a matcher muting new alerts and fire alarms of a school or district for a while.
CREATE TABLE incident.silences (
    silence text PRIMARY KEY,
    school text,
    district text,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    matcher jsonb NOT NULL,
    reason text NOT NULL,
    created_by text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'cancelled')),
    suppressed integer NOT NULL DEFAULT 0,
    closed_at timestamptz,
    event bigint
);
CREATE INDEX ON incident.silences (ends_at) WHERE status = 'active';

-- Alarms and alerts that were recorded without escalation: during a drill, under a silence,
-- or a panel test.
CREATE TABLE incident.suppressed (
    seq bigint NOT NULL DEFAULT nextval('incident.ledger_seq') PRIMARY KEY,
    event bigint,
    at timestamptz NOT NULL,
    school text,
    district text,
    tz text NOT NULL,
    origin text NOT NULL,
    cause text NOT NULL CHECK (cause IN ('drill', 'silence', 'test')),
    ref text,
    data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON incident.suppressed (school, at);
