SELECT ARRAY['x;', 'y']::text[], '{1,2}'::int[] && ARRAY[2];
