//! The pure model: file names, normalization, checksums, directives, the
//! SQL lexer, the compile-time checks and reading a folder. It needs only
//! `std`, so `dbprep-macros` runs the very same code at compile time.

pub mod check;
pub mod checksum;
pub mod directive;
pub mod fixture;
pub mod folder;
pub mod fuzz;
pub mod history;
pub mod lexer;
pub mod lint;
pub mod migration;
pub mod name;
pub mod normalize;
pub mod source;
pub mod sum;
