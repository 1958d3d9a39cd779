#![allow(
    clippy::print_stderr,
    reason = "tests report skips and counts on stderr"
)]

//! BuildKit's own parser test files (`../shared/conformance/buildkit-parser`):
//! `kiln parse --dump` must equal each `result` file byte for byte, and every
//! negative case must be rejected with a located error, never a panic.
//!
//! The cases live beside the project, not in it; a user's clone without
//! `../shared` skips with a message, unless `KILN_REQUIRE_CONFORMANCE=1`
//! (set by the test command in CI), which turns the skip into a failure.

mod common;

use std::path::{Path, PathBuf};

use common::{run, stderr, stdout};

fn conformance_dir() -> Option<PathBuf> {
    let dir = common::shared_dir().map(|d| d.join("conformance/buildkit-parser"));
    match dir {
        Some(dir) if dir.is_dir() => Some(dir),
        _ => {
            assert!(
                std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
                "KILN_REQUIRE_CONFORMANCE is set but ../shared/conformance/buildkit-parser is missing"
            );
            eprintln!("skipped: ../shared/conformance/buildkit-parser is absent");
            None
        }
    }
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("conformance folder is readable")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn buildkit_positive_cases_dump_identically() {
    let Some(dir) = conformance_dir() else { return };
    let cases = cases(&dir.join("testfiles"));
    assert!(
        cases.len() >= 33,
        "expected the 33 BuildKit cases, found {}",
        cases.len()
    );
    let mut failed = Vec::new();
    for case in &cases {
        let file = case.join("Dockerfile");
        let out = run(&["parse", "--dump", "-f", file.to_str().unwrap()]);
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        if !out.status.success() || stdout(&out) != expected {
            failed.push(format!(
                "{}:\n--- expected\n{expected}--- got (status {})\n{}{}",
                case.display(),
                out.status,
                stdout(&out),
                stderr(&out)
            ));
        }
    }
    eprintln!(
        "buildkit parser conformance: {} of {} positive cases passed",
        cases.len() - failed.len(),
        cases.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn buildkit_negative_cases_are_rejected_with_a_location() {
    let Some(dir) = conformance_dir() else { return };
    let cases = cases(&dir.join("testfiles-negative"));
    assert!(
        cases.len() >= 4,
        "expected the 4 negative cases, found {}",
        cases.len()
    );
    for case in &cases {
        let file = case.join("Dockerfile");
        let path = file.to_str().unwrap();
        let out = run(&["parse", "--dump", "-f", path]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} was accepted:\n{}",
            case.display(),
            stdout(&out)
        );
        assert!(
            err.starts_with(&format!("error: {path}:")),
            "{}: {err}",
            case.display()
        );
        assert!(!err.contains("panicked"), "{}: {err}", case.display());
    }
    eprintln!(
        "buildkit parser conformance: {} of {} negative cases rejected",
        cases.len(),
        cases.len()
    );
}

#[test]
fn buildkit_line_numbers_match() {
    let Some(dir) = conformance_dir() else { return };
    let file = dir.join("testfile-line/Dockerfile");
    let out = run(&["parse", "--json", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let spans: Vec<(String, u64, u64)> = doc["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["keyword"].as_str().unwrap().to_string(),
                i["lines"]["start"].as_u64().unwrap(),
                i["lines"]["end"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        spans,
        vec![
            ("from".to_string(), 5, 5),
            ("env".to_string(), 11, 12),
            ("run".to_string(), 17, 31),
        ]
    );
}
