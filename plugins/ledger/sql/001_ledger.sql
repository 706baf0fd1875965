-- ledger: the rest of a school's safety records (leadership, agreements, rules, drills,
-- education, meetings, outings, gate register) and the deadlines kept on them.
CREATE SCHEMA ledger;

-- A time as RFC 3339 in the school's local time ("2026-03-05T09:00:00+08:00"): what the
-- ledger shows an inspector. NULL in, NULL out.
CREATE FUNCTION ledger.local_time(ts timestamptz, tz text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(ts AT TIME ZONE tz, 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN o.m < 0 THEN '-' ELSE '+' END
           || lpad((abs(o.m) / 60)::text, 2, '0') || ':' || lpad((abs(o.m) % 60)::text, 2, '0')
      FROM (SELECT (extract(epoch FROM (ts AT TIME ZONE tz) - (ts AT TIME ZONE 'UTC')) / 60)::int
                   AS m) o
$$;

-- Every school the plugin has heard of, with the next monthly drill check.
CREATE TABLE ledger.schools (
    id serial PRIMARY KEY,
    school text NOT NULL UNIQUE,
    district text,
    timezone text NOT NULL,
    registered_on date NOT NULL,
    drill_month date,       -- first day of the next month to check, NULL: none
    drill_due timestamptz   -- when that check runs (local midnight after its last term day)
);
CREATE INDEX schools_drill_due ON ledger.schools (drill_due) WHERE drill_due IS NOT NULL;
CREATE INDEX schools_district ON ledger.schools (district);

-- The safety leadership group (安全工作领导小组).
CREATE TABLE ledger.leadership (
    school_id integer NOT NULL REFERENCES ledger.schools,
    member text NOT NULL,
    name text,
    position text NOT NULL CHECK (position IN ('leader', 'deputy', 'member')),
    duty text NOT NULL,
    active boolean NOT NULL,
    since date,
    updated_at timestamptz NOT NULL,
    event_id bigint NOT NULL,
    PRIMARY KEY (school_id, member)
);

-- Safety rules and responsibility rules, each version kept.
CREATE TABLE ledger.rules (
    school_id integer NOT NULL REFERENCES ledger.schools,
    rule text NOT NULL,
    version text NOT NULL,
    title text NOT NULL,
    category text,
    effective_from date,
    url text,
    summary text,
    published_at timestamptz NOT NULL,
    event_id bigint NOT NULL,
    PRIMARY KEY (school_id, rule, version)
);

-- Responsibility agreements (安全责任书) and who is expected to sign them.
CREATE TABLE ledger.agreements (
    school_id integer NOT NULL REFERENCES ledger.schools,
    agreement text NOT NULL,
    party text NOT NULL,
    party_role text NOT NULL,
    term text NOT NULL,
    signed_on date NOT NULL,
    title text,
    counterparty text,
    event_id bigint NOT NULL,
    PRIMARY KEY (school_id, agreement)
);
CREATE INDEX agreements_term ON ledger.agreements (school_id, term, party_role, party);
CREATE INDEX agreements_signed_on ON ledger.agreements (school_id, signed_on);

CREATE TABLE ledger.agreement_roster (
    school_id integer NOT NULL REFERENCES ledger.schools,
    term text NOT NULL,
    party_role text NOT NULL,
    party text NOT NULL,
    declared_on date NOT NULL,
    PRIMARY KEY (school_id, term, party_role, party)
);

-- Drills: scheduled → running → ended, or ended at once by drill.conducted; scheduled → cancelled.
CREATE TABLE ledger.drills (
    id bigserial PRIMARY KEY,
    school_id integer NOT NULL REFERENCES ledger.schools,
    drill text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL CHECK (status IN ('scheduled', 'running', 'ended', 'cancelled')),
    scheduled_start timestamptz,
    scheduled_end timestamptz,
    starts_at timestamptz,
    ends_at timestamptz,
    participants integer,
    evacuation_seconds integer,
    problems jsonb,
    responsible text,
    note text,
    event_id bigint NOT NULL,
    UNIQUE (school_id, drill)
);
CREATE INDEX drills_start ON ledger.drills (school_id, starts_at);

-- The outcome of each month's drill check (the minimum of one evacuation drill a month in term).
CREATE TABLE ledger.drill_months (
    school_id integer NOT NULL REFERENCES ledger.schools,
    month date NOT NULL,
    in_term_days integer NOT NULL,
    required integer NOT NULL,
    held integer NOT NULL,
    checked_at timestamptz NOT NULL,
    PRIMARY KEY (school_id, month)
);

CREATE TABLE ledger.education (
    school_id integer NOT NULL REFERENCES ledger.schools,
    session text NOT NULL,
    topic text NOT NULL,
    title text,
    classes jsonb NOT NULL,
    teacher text NOT NULL,
    held_at timestamptz NOT NULL,
    participants integer,
    duration_minutes integer,
    event_id bigint NOT NULL,
    PRIMARY KEY (school_id, session)
);
CREATE INDEX education_held ON ledger.education (school_id, held_at);

CREATE TABLE ledger.meetings (
    school_id integer NOT NULL REFERENCES ledger.schools,
    meeting text NOT NULL,
    title text,
    held_at timestamptz NOT NULL,
    chair text,
    attendees jsonb NOT NULL,
    decisions jsonb NOT NULL,
    minutes text,
    event_id bigint NOT NULL,
    PRIMARY KEY (school_id, meeting)
);
CREATE INDEX meetings_held ON ledger.meetings (school_id, held_at);

-- Group outings: refused (15-day rule, missing fields) | pending → approved | declined → returned.
CREATE TABLE ledger.outings (
    id bigserial PRIMARY KEY,
    school_id integer NOT NULL REFERENCES ledger.schools,
    outing text NOT NULL,
    title text,
    starts_at timestamptz,
    ends_at timestamptz,
    headcount integer,
    route text,
    place text,
    security_measures text,
    responsible text,
    emergency_plan text,
    classes jsonb,
    submitted_at timestamptz NOT NULL,
    submitted_by text,
    status text NOT NULL CHECK (status IN ('refused', 'pending', 'approved', 'declined',
                                           'returned')),
    refusal text,
    decided_by text,
    decided_at timestamptz,
    decision_note text,
    returned_at timestamptz,
    returned_headcount integer,
    return_note text,
    reminder_due timestamptz,
    reminders integer NOT NULL DEFAULT 0,
    event_id bigint NOT NULL,
    UNIQUE (school_id, outing)
);
CREATE INDEX outings_reminder ON ledger.outings (reminder_due) WHERE reminder_due IS NOT NULL;

-- Visitors registered at the gate.
CREATE TABLE ledger.visits (
    id bigserial PRIMARY KEY,
    school_id integer NOT NULL REFERENCES ledger.schools,
    visit text NOT NULL,
    name text,
    organisation text,
    purpose text,
    host text,
    gate text,
    vehicle text,
    entered_at timestamptz NOT NULL,
    exited_at timestamptz,
    overstay_due timestamptz,  -- NULL once the visitor left or was flagged
    overstayed boolean NOT NULL DEFAULT false,
    event_id bigint NOT NULL,
    UNIQUE (school_id, visit)
);
CREATE INDEX visits_overstay ON ledger.visits (overstay_due) WHERE overstay_due IS NOT NULL;
CREATE INDEX visits_entered ON ledger.visits (school_id, entered_at);

-- Pupil card access: high volume, so one narrow row each and no JSON (direction 1 in, 2 out).
-- Columns ordered so that no padding falls between them.
CREATE TABLE ledger.card_events (
    ts timestamptz NOT NULL,
    school_id integer NOT NULL,
    direction smallint NOT NULL CHECK (direction IN (1, 2)),
    card text NOT NULL
);
CREATE INDEX card_events_school_ts ON ledger.card_events (school_id, ts);
