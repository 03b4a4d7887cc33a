SELECT CASE WHEN 1 = 1 THEN 'commit' END AS "end", 'begin' AS "begin";
