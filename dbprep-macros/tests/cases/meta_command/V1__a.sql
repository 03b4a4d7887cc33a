\set ON_ERROR_STOP on
CREATE TABLE a (id int);
