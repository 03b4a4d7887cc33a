SET LOCAL lock_timeout = '5s';
RESET lock_timeout;
