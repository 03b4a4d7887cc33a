CREATE TABLE commit_log (begin_at timestamptz, "end" int, "commit" text, rollback_count int);
INSERT INTO commit_log (rollback_count) VALUES (1);
