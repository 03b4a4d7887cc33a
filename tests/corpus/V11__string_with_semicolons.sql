SELECT 'a; COMMIT; b', 'it''s; ROLLBACK';
