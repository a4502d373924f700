"""The shared runtime of every feedchat service: config, logging, errors, auth, the etcd
registry, Snowflake ids, the server bootstrap, and the pieces several services build on
(the chat ring, the pub/sub hub, the stream worker, the ``notify:queue`` contract). The
local supervisor (``feedchat up``) is :mod:`feedchat_local`."""
