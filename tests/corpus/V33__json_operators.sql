SELECT '{"a": {"b": ";"}}'::jsonb #> '{a,b}', '[1,2]'::jsonb @> '[1]';
