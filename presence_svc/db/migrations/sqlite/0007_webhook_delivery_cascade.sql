-- A delivery belongs to its endpoint: deleting the endpoint deletes its deliveries, and
-- a delivery for an endpoint deleted a moment earlier (a lane parking what it held, the
-- dispatcher queueing what it read) is refused rather than left behind, never shown yet
-- counted in the backlog. SQLite adds a foreign key only by rebuilding the table (and
-- enforces it only with PRAGMA foreign_keys=ON, which every connection sets). The rows
-- left behind before this are dropped; the seq counter carries on where it was.
DELETE FROM webhook_deliveries
WHERE endpoint_id NOT IN (SELECT endpoint_id FROM webhook_endpoints);
CREATE TABLE webhook_deliveries_new (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL
                REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    artifact_id TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    failed      INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
INSERT INTO webhook_deliveries_new (seq, endpoint_id, event_id, event_type, artifact_id,
    body, created_at, attempts, next_at, last_error, failed)
SELECT seq, endpoint_id, event_id, event_type, artifact_id, body, created_at, attempts,
    next_at, last_error, failed
FROM webhook_deliveries ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'webhook_deliveries_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'webhook_deliveries_new', seq FROM sqlite_sequence WHERE name = 'webhook_deliveries';
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, failed, seq);
