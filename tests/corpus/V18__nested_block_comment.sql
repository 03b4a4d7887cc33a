/* outer /* inner; COMMIT; */ still comment; ROLLBACK; */
SELECT 2;
