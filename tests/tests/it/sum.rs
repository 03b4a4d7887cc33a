//! The sum file and the embedded-set-equals-folder check.

use std::fs;

use dbprep_runtime::write_sum_file;
use dbprep_runtime::{Migrations, SourceError};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");

#[test]
fn the_demo_binary_embeds_exactly_the_demo_folder() {
    DEMO.assert_matches_dir("../migrations");
}

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

#[test]
fn diff_dir_names_added_edited_and_deleted_files_and_the_fix() {
    let dir = folder(&[("V1__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;")]);
    let built = Migrations::from_dir(dir.path()).unwrap();
    fs::write(dir.path().join("V3__c.sql"), "SELECT 3;").unwrap();
    fs::write(dir.path().join("V2__b.sql"), "SELECT 22;").unwrap();
    fs::remove_file(dir.path().join("V1__a.sql")).unwrap();
    let mismatch = built.diff_dir(dir.path()).unwrap_err();
    assert!(mismatch.not_embedded[0].ends_with("V3__c.sql"));
    assert!(mismatch.stale[0].ends_with("V2__b.sql"));
    assert!(mismatch.gone[0].ends_with("V1__a.sql"));
    assert!(
        mismatch.to_string().contains("cargo:rerun-if-changed="),
        "{mismatch}"
    );
}

#[test]
fn a_sum_file_pins_every_migration() {
    let dir = folder(&[("V1__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;")]);
    assert!(write_sum_file(dir.path()).unwrap());
    assert!(
        !write_sum_file(dir.path()).unwrap(),
        "a second write changes nothing"
    );
    assert!(Migrations::from_dir(dir.path()).is_ok());

    fs::write(dir.path().join("V2__b.sql"), "SELECT 22;").unwrap();
    fs::write(dir.path().join("V3__c.sql"), "SELECT 3;").unwrap();
    let errors = Migrations::from_dir(dir.path()).unwrap_err().0;
    assert!(
        matches!(&errors[0], SourceError::SumChanged { file, .. } if file.ends_with("V2__b.sql")),
        "{errors:?}"
    );
    assert!(
        matches!(&errors[1], SourceError::SumUnlisted { file, .. } if file.ends_with("V3__c.sql")),
        "{errors:?}"
    );

    fs::remove_file(dir.path().join("V1__a.sql")).unwrap();
    write_sum_file(dir.path()).unwrap();
    assert_eq!(Migrations::from_dir(dir.path()).unwrap().len(), 2);
}
