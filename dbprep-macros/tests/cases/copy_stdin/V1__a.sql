CREATE TABLE a (id int);
COPY a (id) FROM stdin;
