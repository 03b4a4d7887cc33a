SELECT B'1010', X'1F', N'national; commit';
