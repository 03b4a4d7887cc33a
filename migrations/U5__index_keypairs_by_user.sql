-- dbprep:no-transaction
-- Dropped concurrently, as it was built: keypairs keeps taking writes.
DROP INDEX CONCURRENTLY IF EXISTS ix_keypairs_user_id;
