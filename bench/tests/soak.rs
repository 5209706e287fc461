//! The soak's short form: `mailroom-bench soak` with 400 messages over 20 mailboxes under
//! Graph and AWS faults, crashes, lost and repeated notifications and two secret rotations
//! (bench/src/soak.rs). The long run is `cargo run --release -p mailroom-bench -- soak`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn soak(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom-bench"))
        .arg("soak")
        .args(args)
        .output()
        .expect("mailroom-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout)
}

fn summary(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

#[test]
fn a_short_soak_loses_nothing_and_stores_nothing_twice() {
    let (ok, stdout) = soak(&[
        "--messages",
        "400",
        "--mailboxes",
        "20",
        "--rounds",
        "4",
        "--seed",
        "20261204",
    ]);
    let line = summary(&stdout);
    assert!(
        line.starts_with("lost=0 duplicated=0 orphans=0 unfinished=0 corrupt=0 messages=400 "),
        "{line}"
    );
    assert!(ok, "the soak exited non-zero: {line}");
    // It really was hostile: faults on both sides, crashes, lost and repeated notifications.
    for figure in [
        "graph_faults=",
        "aws_faults=",
        "crashes=",
        "dropped=",
        "delivered_twice=",
    ] {
        let value: usize = line
            .split(figure)
            .nth(1)
            .and_then(|rest| rest.split([' ', '(']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{figure} missing from {line}"));
        assert!(value > 0, "no {figure} in {line}");
    }
    assert!(line.contains("rotations=2 app_passwords=1"), "{line}");
}

#[test]
fn the_soak_sees_a_stored_object_go_missing() {
    let (ok, stdout) = soak(&[
        "--messages",
        "40",
        "--mailboxes",
        "4",
        "--rounds",
        "2",
        "--seed",
        "7",
        "--tamper",
    ]);
    let line = summary(&stdout);
    assert!(line.starts_with("lost=1 "), "{line}");
    assert!(
        !ok,
        "the soak exited zero although an object was lost: {line}"
    );
}
