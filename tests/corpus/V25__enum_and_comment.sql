CREATE TYPE c25_mood AS ENUM ('sad', 'ok', 'happy; commit');
COMMENT ON TYPE c25_mood IS 'moods; BEGIN; END;';
