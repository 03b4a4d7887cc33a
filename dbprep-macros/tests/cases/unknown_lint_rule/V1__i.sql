-- dbprep:allow(create-indexes)
CREATE INDEX i ON t (a);
