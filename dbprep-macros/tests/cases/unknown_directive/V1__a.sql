-- dbprep:no-transactions
SELECT 1;
