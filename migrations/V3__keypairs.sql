CREATE TABLE keypairs (
    access_key  text PRIMARY KEY CHECK (length(access_key) = 20),
    secret_key  text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_active   boolean NOT NULL DEFAULT true,
    is_admin    boolean NOT NULL DEFAULT false,
    rate_limit  integer NOT NULL DEFAULT 5000,
    num_queries bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used   timestamptz
);
