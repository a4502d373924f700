ALTER TABLE notes ADD COLUMN author text NOT NULL DEFAULT '';
-- Slow on purpose: concurrent starters must wait for this, not run it again.
SELECT pg_sleep(0.2);
