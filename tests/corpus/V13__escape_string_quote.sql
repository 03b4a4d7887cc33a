SELECT E'\'; BEGIN; \'' AS s;
