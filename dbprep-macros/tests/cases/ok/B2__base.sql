CREATE TABLE a (id int);
CREATE INDEX ix ON a (id);
