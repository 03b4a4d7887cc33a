-- dbprep:lock-timeout 5 seconds
ALTER TABLE t ADD COLUMN c int;
