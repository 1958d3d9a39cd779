//! `kiln parse` as a user meets it: output shapes, located errors, exit codes.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{kiln, run, stderr, stdout};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn parse_lists_instructions_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "Dockerfile",
        "FROM alpine AS build\nRUN echo a \\\n    b\nCOPY <<EOF /x\nhi\nEOF\n",
    );
    let out = run(&["parse", "-f", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("      1  FROM alpine AS build"), "{text}");
    assert!(text.contains("    2-3  RUN echo a     b"), "{text}");
    assert!(text.contains("    4-6  COPY <<EOF /x"), "{text}");
}

#[test]
fn parse_json_has_keyword_flags_args_heredocs_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "Dockerfile",
        "# syntax=docker/dockerfile:1\nFROM alpine\nCOPY --chmod=644 <<-EOF /etc/x\n\thello\n\tEOF\nCMD [\"sh\"]\n",
    );
    let out = run(&["parse", "--json", "-f", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["directives"]["syntax"], "docker/dockerfile:1");
    let copy = &doc["instructions"][1];
    assert_eq!(copy["keyword"], "copy");
    assert_eq!(copy["flags"][0], "--chmod=644");
    assert_eq!(copy["heredocs"][0]["name"], "EOF");
    assert_eq!(copy["heredocs"][0]["chomp"], true);
    assert_eq!(copy["lines"]["start"], 3);
    assert_eq!(copy["lines"]["end"], 5);
    assert_eq!(doc["instructions"][2]["json"], true);
}

#[test]
fn errors_name_file_line_and_column_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "Dockerfile", "FROM alpine\nRUN echo ok\nFROOM x\n");
    let out = run(&["parse", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: {file}:3:1: ")), "{err}");
    assert!(err.contains("unknown instruction"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn unknown_flag_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "Dockerfile", "FROM alpine\nCOPY --nope=1 a b\n");
    let out = run(&["parse", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: {file}:2:1: ")), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = run(&["parse", "-f", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("failed to read /nonexistent/Dockerfile"),
        "{err}"
    );
    assert!(err.contains("caused by:"), "{err}");
}

#[test]
fn garbage_bytes_give_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, b"\xff\xfe\x00RUN \x80\x81\n").unwrap();
    let out = run(&["parse", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(":1:1: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn dockerfile_can_come_from_stdin() {
    let mut child = kiln()
        .args(["parse", "--dump", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from busybox\nrun echo hi\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "(from \"busybox\")\n(run \"echo hi\")\n");
}

#[test]
fn empty_continuation_lines_warn_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "Dockerfile", "FROM alpine\nRUN echo a \\\n\n    b\n");
    let out = run(&["parse", "--dump", "-f", &file]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(&format!("{file}:2: warning: empty continuation")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stages_show_scoping_and_target_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "Dockerfile",
        "ARG BASE=busybox\nFROM ${BASE} AS build\nARG V=1\nLABEL v=$V\nFROM scratch AS unused\nFROM scratch\nCOPY --from=build /x /x\n",
    );
    let out = run(&[
        "parse",
        "--stages",
        "--json",
        "-f",
        &file,
        "--build-arg",
        "V=2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages = doc["stages"].as_array().unwrap();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["build", ""]);
    assert_eq!(stages[0]["base"]["image"], "busybox");
    assert_eq!(
        stages[0]["steps"][1]["instruction"]["pairs"][0]["value"],
        "2"
    );

    let out = run(&["parse", "--stages", "-f", &file, "--target", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("target stage `nope` could not be found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stage_graph_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "Dockerfile", "FROM scratch AS a\nFROM scratch AS A\n");
    let out = run(&["parse", "--stages", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("error: {file}:2:1: duplicate stage name")),
        "{}",
        stderr(&out)
    );
}
