-- The timeline's hourly rollup: per artifact and hour (its start, ms since the epoch) the
-- most users and sessions online at once, and the values the hour ended with (carried
-- through hours without a row). Written by the worker, idempotently.
CREATE TABLE timeline_hours (
    artifact_id   text    NOT NULL,
    hour          bigint  NOT NULL,
    peak_online   integer NOT NULL,
    peak_sessions integer NOT NULL,
    last_online   integer NOT NULL,
    last_sessions integer NOT NULL,
    PRIMARY KEY (artifact_id, hour)
);
