SELECT 'C:\temp\new' AS path;
