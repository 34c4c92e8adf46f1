//! The `natter` binary.

fn main() {}
