BEGIN;
CREATE TABLE a (id int);
