-- dbprep:no-transaction
CREATE OR REPLACE VIEW v AS SELECT 1;
