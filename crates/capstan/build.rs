//! Links the capstan binary as a position-dependent executable.
//!
//! Every container has a shim, and every shim is this binary. As a PIE, each process would
//! relocate (and so privately copy) about 1 MiB of read-only data at start; without PIE those
//! pages stay shared with the file, so a shim costs a few hundred KiB instead. (Go builds
//! containerd's shims the same way.)
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
