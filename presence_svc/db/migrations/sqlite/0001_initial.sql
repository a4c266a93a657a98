-- The ledger (views) and the users directory. Times are milliseconds since the epoch.
CREATE TABLE views (
    view_id     TEXT PRIMARY KEY,
    artifact_id TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    session_id  TEXT,
    viewed_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX views_by_time ON views (viewed_at, view_id);
CREATE INDEX views_by_artifact ON views (artifact_id, viewed_at, view_id);
CREATE INDEX views_by_user ON views (user_id, viewed_at, view_id);
CREATE TABLE users (
    user_id    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    avatar_url TEXT,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
