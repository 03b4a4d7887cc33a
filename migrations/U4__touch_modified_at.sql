DROP TRIGGER users_touch ON users;
DROP TRIGGER groups_touch ON groups;
DROP TRIGGER domains_touch ON domains;
DROP FUNCTION touch_modified_at();
