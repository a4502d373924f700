-- A demo schema for the migration tests.
CREATE TABLE notes (
    note_id bigint PRIMARY KEY,
    body    text   NOT NULL CHECK (length(body) <= 100)
);
