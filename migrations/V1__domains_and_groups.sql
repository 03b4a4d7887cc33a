-- Domains partition users and their resources; groups live in a domain.
CREATE TABLE domains (
    name        text PRIMARY KEY,
    description text,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    description text,
    domain_name text NOT NULL REFERENCES domains (name) ON UPDATE CASCADE,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_name, name)
);

COMMENT ON TABLE domains IS 'Top-level tenants; every user belongs to one';
