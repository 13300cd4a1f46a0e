//! `trtfarm`, the command-line client.

fn main() {}
