DO $$
BEGIN
  PERFORM 1;
EXCEPTION WHEN others THEN
  RAISE NOTICE 'rollback; commit;';
END
$$;
