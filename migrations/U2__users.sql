DROP TABLE association_groups_users;
DROP TABLE users;
DROP TYPE user_status;
DROP TYPE user_role;
