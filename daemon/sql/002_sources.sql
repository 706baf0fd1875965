-- Sending systems allowed to write when ingest.curve is on: their CURVE public key and the
-- schools and districts they may write for. Secrets are never stored.

CREATE TABLE core.sources (
    source     text PRIMARY KEY,
    public_key text NOT NULL UNIQUE,
    schools    text[] NOT NULL DEFAULT '{}',
    districts  text[] NOT NULL DEFAULT '{}',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
