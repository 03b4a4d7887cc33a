//! Integration tests against a real PostgreSQL: one binary, one throwaway
//! cluster (or the server of `DATABASE_URL`), one database per test.

mod adopt;
mod baselines;
mod checks;
mod connect;
mod drift;
mod faults;
mod fixtures;
mod kill;
mod live;
mod migrator;
mod repeatables;
mod replicas;
mod revert;
mod script;
mod sqlite;
mod sum;
mod support;
mod tenants;
mod test_databases;
