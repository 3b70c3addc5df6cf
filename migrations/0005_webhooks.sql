-- API keys for applications' servers (created and revoked with `firesfu apikey`), webhook
-- endpoints, and the deliveries still owed to them.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    -- SHA-256 of the whole key: the key itself is shown once, when it is created.
    key_hash    bytea NOT NULL UNIQUE,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    last_used_at timestamptz
);

CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    url         text NOT NULL,
    -- The signing secret (Standard Webhooks, `whsec_` + base64); needed in clear to sign.
    secret      text NOT NULL,
    -- Event types delivered (`participant.joined`, …); empty: all of them.
    event_types text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per event and endpoint: pending, delivered (kept an hour, so that an event Pub/Sub
-- delivers again is not sent again), or given up (state
-- 'failed': the dead letters, kept until replayed or the endpoint is deleted).
CREATE TABLE webhook_deliveries (
    seq             bigserial PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    room            text NOT NULL,
    -- The request body, exactly as signed and sent.
    payload         text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A deliverer holds the row until then (another takes it over after a crash).
    locked_until    timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    failed_at       timestamptz,
    UNIQUE (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, room, seq)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, seq)
    WHERE state = 'failed';
