-- feed_svc: the follow graph (with post alerts settings), posts and CreatePost request ids
-- (the record; Redis keeps the feed caches, celebrity list, post bodies, follower/following
-- lists, alert sets and post id lists as caches filled from here). User and post ids are Snowflake ids (63 bits): bigint.
-- No foreign key to the users: they live in account_svc's tables.

CREATE TABLE follows (
    follower_id bigint NOT NULL CHECK (follower_id > 0),
    author_id   bigint NOT NULL CHECK (author_id > 0),
    created_ms  bigint NOT NULL,
    alerts      boolean NOT NULL DEFAULT false,  -- the follower gets alerts for new posts
    PRIMARY KEY (follower_id, author_id),  -- a user's following, in id order
    CONSTRAINT no_self_follow CHECK (follower_id <> author_id)
);
-- An author's followers, in id order: fanout and ListFollowers page on it (keyset).
CREATE INDEX follows_by_author ON follows (author_id, follower_id);
-- An author's alerted followers (counted against --max-alerted-followers).
CREATE INDEX follows_alerted ON follows (author_id, follower_id) WHERE alerts;

CREATE TABLE posts (
    post_id    bigint NOT NULL PRIMARY KEY CHECK (post_id > 0),
    author_id  bigint NOT NULL CHECK (author_id > 0),
    text       text   NOT NULL,
    created_ms bigint NOT NULL
);
-- An author's posts, newest first (ListUserPosts, feed rebuilds).
CREATE INDEX posts_by_author ON posts (author_id, post_id);

-- CreatePost's client request ids (feed_svc/post_requests.py): written in the post's
-- transaction; a record older than its time-to-live is replaced by a new call.
CREATE TABLE post_requests (
    author_id  bigint NOT NULL CHECK (author_id > 0),
    request_id text   NOT NULL CHECK (length(request_id) BETWEEN 1 AND 64),
    post_id    bigint NOT NULL,
    digest     text   NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (author_id, request_id)
);
