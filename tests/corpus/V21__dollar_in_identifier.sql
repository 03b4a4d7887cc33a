CREATE TABLE c21 (a$b int, "x$y" int);
SELECT a$b FROM c21;
