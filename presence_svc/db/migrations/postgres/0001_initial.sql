-- The ledger (views) and the users directory. Times are milliseconds since the epoch.
-- views is range-partitioned by month on viewed_at; the worker creates the months ahead
-- (ledger/postgres.py) and the default partition catches anything outside them. A view
-- id always comes with the same viewed_at (both are in its stream entry), so the primary
-- key (view_id, viewed_at), which a partitioned table needs to hold its partition key,
-- keeps each view once across every partition.
CREATE TABLE views (
    view_id     text   NOT NULL,
    artifact_id text   NOT NULL,
    version_id  text   NOT NULL,
    user_id     text   NOT NULL,
    session_id  text,
    viewed_at   bigint NOT NULL,
    PRIMARY KEY (view_id, viewed_at)
) PARTITION BY RANGE (viewed_at);
CREATE TABLE views_default PARTITION OF views DEFAULT;
CREATE INDEX views_by_time ON views (viewed_at, view_id);
CREATE INDEX views_by_artifact ON views (artifact_id, viewed_at, view_id);
CREATE INDEX views_by_user ON views (user_id, viewed_at, view_id);
CREATE TABLE users (
    user_id    text   PRIMARY KEY,
    name       text   NOT NULL,
    avatar_url text,
    updated_at bigint NOT NULL
);
