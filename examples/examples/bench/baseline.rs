//! A fresh install from a baseline written by `squash`, against replaying
//! every migration: 1,000 generated migrations, on the bench's cluster.

use dbprep_runtime::{Migrations, Migrator};

use super::{generate, migration_sql, Bench, Pairs};

impl Bench {
    /// The figure: `runs` fresh installs each way, in turn first.
    pub(super) async fn baseline(&mut self, runs: usize, table: &mut String) {
        let (dir, all, _) = generate(1000, migration_sql);
        let replay = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        let baseline = Migrator::new(&replay)
            .squash(&self.cluster.config("postgres"))
            .await
            .expect("squash the generated migrations");
        let baseline_file = dir.path().join(&baseline.file_name);
        std::fs::write(&baseline_file, &baseline.sql).expect("write the baseline");
        let with_baseline = Migrations::from_dir(dir.path()).expect("the baseline is valid");
        let mut pairs = Pairs::default();
        for i in 0..runs {
            let (ours, theirs) = if i % 2 == 0 {
                let ours = self.dbprep_apply(&with_baseline, "template1").await;
                (ours, self.dbprep_apply(&replay, "template1").await)
            } else {
                let theirs = self.dbprep_apply(&replay, "template1").await;
                (self.dbprep_apply(&with_baseline, "template1").await, theirs)
            };
            pairs.push(ours, theirs);
        }
        pairs.report(
            table,
            "fresh install of 1,000 generated migrations from their baseline (`squash --to 1000`)",
            "replaying the 1,000 migrations",
            "≥ 5× faster (≤ 0.2×)",
        );
        // The same two scripts through `psql -1 -f`: what PostgreSQL itself
        // saves by running the schema's final form instead of its history.
        let mut psql = Pairs::default();
        for _ in 0..runs {
            let ours = self.psql_apply(&baseline_file, "template1").await;
            psql.push(ours, self.psql_apply(&all, "template1").await);
        }
        psql.report(
            table,
            "`psql -1 -f` of that baseline",
            "`psql -1 -f` of the 1,000 migrations",
            "—",
        );
    }
}
