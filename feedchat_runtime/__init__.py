"""The shared runtime of every feedchat service: config, logging, errors, auth, the etcd
registry, Snowflake ids, the server bootstrap, and the local cluster (`feedchat up`)."""
