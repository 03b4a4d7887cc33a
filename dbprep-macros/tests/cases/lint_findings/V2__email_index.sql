-- speeds up sign-in
CREATE INDEX users_email ON users (email);
