DO $do$
BEGIN
  EXECUTE $sql$ CREATE TABLE c46 (note text DEFAULT 'END;') $sql$;
END
$do$;
