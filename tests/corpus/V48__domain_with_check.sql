CREATE DOMAIN c48_email AS text CHECK (VALUE ~ '^[^@;]+@[^@]+$');
