INSERT INTO t VALUES (E'a\\b "q"', 'café — ́');
-- tab	here
