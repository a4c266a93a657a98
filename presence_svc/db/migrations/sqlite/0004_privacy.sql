-- Privacy settings of the users directory (PUT /v1/users/{id}/privacy): whether a user's
-- view history and presence are visible to others ('visible') or not ('hidden'). A user
-- without a row has both visible. The ledger's reads leave out the views of users whose
-- view history is hidden by a subquery on this table.
CREATE TABLE privacy (
    user_id      TEXT PRIMARY KEY,
    view_history TEXT NOT NULL DEFAULT 'visible',
    presence     TEXT NOT NULL DEFAULT 'visible',
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
