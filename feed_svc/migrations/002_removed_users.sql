-- feed_svc: accounts removed from the feed (DeleteUserContent). Kept for good (user ids are
-- never reused): a post or follow written with a deleted account's still-valid access token
-- is refused by the record itself, so a wiped Redis (which held the fast check's copy of
-- this mark) cannot let one through.

CREATE TABLE removed_users (
    user_id    bigint PRIMARY KEY CHECK (user_id > 0),
    removed_ms bigint NOT NULL
);
