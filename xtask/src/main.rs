//! Developer tasks: `cargo xtask cluster up|down|status|env`, `cargo xtask test`, and more.
fn main() {}
