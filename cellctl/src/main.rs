//! The `cellctl` operator CLI.
fn main() {}
