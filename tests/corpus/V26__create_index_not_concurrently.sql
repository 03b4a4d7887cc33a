CREATE TABLE c26 (a int);
CREATE INDEX concurrently_built ON c26 (a);
