-- account_svc: users, their credentials and profiles, and refresh-token families.
-- Constraints do the integrity work: one owner per case-folded username, no credential
-- or profile without its user, no refresh token without its user.

CREATE TABLE users (
    user_id    bigint PRIMARY KEY CHECK (user_id > 0),
    username   text   NOT NULL CHECK (username = lower(username)
                                      AND length(username) BETWEEN 3 AND 32),
    created_ms bigint NOT NULL
);
-- Usernames are stored lowercase; the index on lower() keeps the rule even for a row
-- written by hand.
CREATE UNIQUE INDEX users_username_folded ON users (lower(username));

CREATE TABLE credentials (
    user_id       bigint  PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    password_hash text    NOT NULL CHECK (password_hash <> ''),
    -- Bumped when a spent refresh token comes back (it leaked): every refresh token
    -- issued under an older epoch is revoked at once.
    refresh_epoch integer NOT NULL DEFAULT 0
);

CREATE TABLE profiles (
    user_id      bigint PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    display_name text   NOT NULL DEFAULT '' CHECK (length(display_name) <= 64),
    bio          text   NOT NULL DEFAULT '' CHECK (length(bio) <= 280)
);

-- One row per issued refresh token (its JWT id). A rotation marks the presented token
-- used and inserts its replacement in the same transaction.
CREATE TABLE refresh_tokens (
    token_id   text        PRIMARY KEY CHECK (length(token_id) BETWEEN 1 AND 64),
    user_id    bigint      NOT NULL REFERENCES users ON DELETE CASCADE,
    epoch      integer     NOT NULL,
    used       boolean     NOT NULL DEFAULT false,
    expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_user_expiry ON refresh_tokens (user_id, expires_at);
