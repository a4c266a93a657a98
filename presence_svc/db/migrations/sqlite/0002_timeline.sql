-- The timeline's hourly rollup: per artifact and hour (its start, ms since the epoch) the
-- most users and sessions online at once, and the values the hour ended with (carried
-- through hours without a row). Written by the worker, idempotently.
CREATE TABLE timeline_hours (
    artifact_id   TEXT    NOT NULL,
    hour          INTEGER NOT NULL,
    peak_online   INTEGER NOT NULL,
    peak_sessions INTEGER NOT NULL,
    last_online   INTEGER NOT NULL,
    last_sessions INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, hour)
) WITHOUT ROWID;
