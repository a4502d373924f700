-- account_svc: what is left of a deleted account. The users row (and with it the
-- credential, profile and refresh tokens) is deleted; this row keeps the username held
-- until username_free_at and says whether the feed has removed the user's posts yet
-- (account_svc retries that until it succeeds).

CREATE TABLE deleted_accounts (
    user_id          bigint      PRIMARY KEY CHECK (user_id > 0),
    username         text        NOT NULL CHECK (username = lower(username)),
    deleted_at       timestamptz NOT NULL DEFAULT now(),
    username_free_at timestamptz NOT NULL,
    content_removed  boolean     NOT NULL DEFAULT false
);
CREATE INDEX deleted_accounts_username ON deleted_accounts (username, username_free_at);
CREATE INDEX deleted_accounts_pending ON deleted_accounts (user_id) WHERE NOT content_removed;
