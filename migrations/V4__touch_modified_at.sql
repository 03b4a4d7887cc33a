-- Keep modified_at current on every update, whatever the client sends.
CREATE FUNCTION touch_modified_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.modified_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER domains_touch BEFORE UPDATE ON domains
    FOR EACH ROW EXECUTE FUNCTION touch_modified_at();
CREATE TRIGGER groups_touch BEFORE UPDATE ON groups
    FOR EACH ROW EXECUTE FUNCTION touch_modified_at();
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_modified_at();
