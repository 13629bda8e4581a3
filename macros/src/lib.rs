//! Procedural macros of llmd-rs (in progress).
