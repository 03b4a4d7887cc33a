CREATE FUNCTION c40() RETURNS text LANGUAGE sql AS 'SELECT ''commit;''::text';
