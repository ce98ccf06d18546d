//! The git servers of the shared test support crate.
pub use headway_tests::git::*;
