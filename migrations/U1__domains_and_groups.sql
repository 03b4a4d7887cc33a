DROP TABLE groups;
DROP TABLE domains;
