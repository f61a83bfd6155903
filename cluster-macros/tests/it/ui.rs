//! UI tests of `#[cluster_thread::main]`: the `pass` programs compile and run
//! (each runs small clusters that stop by themselves and checks the arguments
//! its workers saw); the `fail` programs must not compile, with the errors in
//! their `.stderr` snapshots. Refresh snapshots with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
