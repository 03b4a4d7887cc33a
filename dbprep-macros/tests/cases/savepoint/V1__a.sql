CREATE TABLE a (id int);
SAVEPOINT before_data;
INSERT INTO a VALUES (1);
