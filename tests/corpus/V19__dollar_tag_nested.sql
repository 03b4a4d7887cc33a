SELECT $outer$ $inner$ ; COMMIT; $inner$ $outer$;
