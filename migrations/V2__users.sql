CREATE TYPE user_role AS ENUM ('superadmin', 'admin', 'user', 'monitor');
CREATE TYPE user_status AS ENUM ('active', 'inactive', 'before-verification');

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username    text NOT NULL UNIQUE,
    email       text NOT NULL UNIQUE,
    password    text,
    full_name   text,
    domain_name text NOT NULL REFERENCES domains (name) ON UPDATE CASCADE,
    role        user_role NOT NULL DEFAULT 'user',
    status      user_status NOT NULL DEFAULT 'active',
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_has_at CHECK (position('@' IN email) > 1)
);

CREATE TABLE association_groups_users (
    group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
