SELECT E'\\\'; COMMIT;' AS s;
