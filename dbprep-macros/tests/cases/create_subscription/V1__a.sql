CREATE SUBSCRIPTION sub CONNECTION 'host=primary dbname=app' PUBLICATION pub;
