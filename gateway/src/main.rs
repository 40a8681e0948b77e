//! The `cellgate` binary.
fn main() {}
