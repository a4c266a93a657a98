-- Webhooks: the endpoints, and the delivery queue (pending deliveries and, with failed = 1,
-- the endpoint's failures). Times are milliseconds since the epoch.
CREATE TABLE webhook_endpoints (
    endpoint_id     TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    artifact_prefix TEXT,
    secret          TEXT NOT NULL,
    previous_secret TEXT,
    previous_until  BIGINT,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    failing_since   BIGINT,
    last_success    BIGINT,
    last_failure    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    artifact_id TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    attempts    INTEGER NOT NULL,
    next_at     BIGINT NOT NULL,
    last_error  TEXT,
    failed      INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, failed, seq);
