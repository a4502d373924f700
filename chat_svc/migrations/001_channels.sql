-- chat_svc: channels and their membership (the record; Redis caches the member sets for
-- the send path and keeps the messages). Channel ids are unsigned 64-bit (direct channels
-- have the top bit set), hence numeric(20, 0).

CREATE TABLE channels (
    channel_id numeric(20, 0) PRIMARY KEY
               CHECK (channel_id > 0 AND channel_id < 18446744073709551616),
    kind       text   NOT NULL CHECK (kind IN ('direct', 'group')),
    name       text   NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    owner_id   bigint NOT NULL DEFAULT 0 CHECK (owner_id >= 0),
    created_ms bigint NOT NULL
);

CREATE TABLE channel_members (
    channel_id numeric(20, 0) NOT NULL REFERENCES channels ON DELETE CASCADE,
    user_id    bigint         NOT NULL CHECK (user_id > 0),
    PRIMARY KEY (channel_id, user_id)
);
-- A user's channels, in id order (ListChannels pages by channel id).
CREATE INDEX channel_members_by_user ON channel_members (user_id, channel_id);
