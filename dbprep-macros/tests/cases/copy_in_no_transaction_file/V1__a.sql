-- dbprep:no-transaction
COPY a FROM STDIN;
