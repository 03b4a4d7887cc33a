CREATE TABLE "begin" ("commit" int);
SELECT "commit" FROM "begin";
