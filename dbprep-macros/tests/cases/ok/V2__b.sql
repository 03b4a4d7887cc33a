-- dbprep:no-transaction
CREATE INDEX CONCURRENTLY ix ON a (id);
