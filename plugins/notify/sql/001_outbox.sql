-- notify: the outbox of notifications to deliver and the log of every delivery attempt.
CREATE SCHEMA notify;

-- One row per notification.requested, keyed by its code (a repeated request is a no-op).
-- The contact is resolved from the directory when the request arrives and kept here,
-- so every retry goes to the same address.
CREATE TABLE notify.outbox (
    id              bigserial PRIMARY KEY,
    notification    text NOT NULL UNIQUE,
    school          text,
    district        text,
    person          text NOT NULL,
    name            text,
    channel         text NOT NULL,
    address         text,          -- e-mail address, phone number or URL; NULL when none
    route           text,          -- the destination server: deliveries are shared out per route
    subject         text NOT NULL DEFAULT '',
    body            text NOT NULL DEFAULT '',
    ref             jsonb,
    event           bigint,        -- journal number of the request
    requested_at    timestamptz NOT NULL,
    requested_on    date NOT NULL, -- requested_at in the school's local time (ledger periods)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    finished_at     timestamptz,
    reason          text,          -- why it failed: "no usable contact", "gave up after retries" …
    last_error      text,
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'pending') = (finished_at IS NULL))
);
CREATE INDEX outbox_due ON notify.outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_school ON notify.outbox (school, requested_on);
CREATE INDEX outbox_district ON notify.outbox (district, requested_on);

-- The delivery log: one row per attempt.
CREATE TABLE notify.attempts (
    notification text NOT NULL REFERENCES notify.outbox (notification),
    attempt      integer NOT NULL CHECK (attempt > 0),
    at           timestamptz NOT NULL,
    address      text,
    ok           boolean NOT NULL,
    status       integer,          -- HTTP or SMTP reply code, when a reply came
    error        text,
    duration_ms  integer,
    PRIMARY KEY (notification, attempt)
);
