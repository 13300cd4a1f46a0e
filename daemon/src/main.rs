//! `trtfarmd`, the build daemon.

fn main() {}
