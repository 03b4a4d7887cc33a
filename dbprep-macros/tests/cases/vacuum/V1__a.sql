VACUUM (ANALYZE) pg_class;
