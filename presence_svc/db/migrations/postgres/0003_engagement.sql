-- Engaged time: the absolute total per (artifact, version, user, UTC day), upserted by the
-- worker from Redis (ledger/engagement_flush.py); never added to, so a replay is a no-op.
CREATE TABLE engagement (
    artifact_id text NOT NULL,
    version_id  text NOT NULL,
    user_id     text NOT NULL,
    day         text NOT NULL,
    engaged_ms  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (day, artifact_id, version_id, user_id)
);
CREATE INDEX engagement_by_artifact ON engagement (artifact_id, day, version_id, user_id);
CREATE INDEX engagement_by_user ON engagement (user_id, day, artifact_id, version_id);
