SELECT 44; -- done
