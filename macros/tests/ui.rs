//! Compile-time rules of `#[traced_span]`, `record!`, `event!` and
//! `#[derive(ErrorType)]`: what compiles cleanly, and what is refused with
//! which message (`tests/ui/fail/*.stderr`; regenerate with
//! `TRYBUILD=overwrite cargo test -p llmd-macros --test ui`, then review).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
