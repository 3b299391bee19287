//! Compile-fail tests (trybuild): a read-only guard hands out no interior mutability, so
//! the store through a READ capability that used to kill the process with SIGSEGV no
//! longer compiles. The expected compiler output lives next to each case in tests/ui/.

#[test]
fn read_only_guard_gives_no_interior_mutability() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
