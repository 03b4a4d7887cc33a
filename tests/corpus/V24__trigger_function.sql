CREATE TABLE c24 (a int, changed timestamptz);
CREATE FUNCTION c24_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.changed := now(); RETURN NEW; END;
$$;
CREATE TRIGGER c24_t BEFORE UPDATE ON c24 FOR EACH ROW EXECUTE FUNCTION c24_touch();
