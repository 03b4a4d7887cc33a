-- dbprep:no-transaction
-- Built concurrently so that a live keypairs table keeps taking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_keypairs_user_id ON keypairs (user_id);
