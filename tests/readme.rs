//! Runs the README's walkthrough exactly as written, so that it cannot rot: the fenced
//! block tagged `sh walkthrough`, with bash, the real `jitledger` and `idp-sim` binaries on
//! PATH, in a temp directory, on a free port.

use std::path::PathBuf;
use std::process::Command;

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh walkthrough\n")
        .expect("README has a walkthrough block")
        + 18;
    let length = readme[start..].find("\n```").expect("the block ends");
    readme[start..start + length].to_string()
}

/// The directory of the built binaries; idp-sim is built there too when missing (it lives in
/// the tools crate, which `cargo test --workspace` builds anyway).
fn binaries() -> PathBuf {
    let jitledger = PathBuf::from(env!("CARGO_BIN_EXE_jitledger"));
    let directory = jitledger.parent().unwrap().to_path_buf();
    if !directory.join("idp-sim").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "jitledger-tools", "--bin", "idp-sim"])
            .status()
            .unwrap();
        assert!(status.success(), "building idp-sim");
    }
    directory
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    let directory = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = format!(
        "{}:{}",
        binaries().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(directory.path())
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env_remove("JITLEDGER_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("\"outcome\":\"provisioned\""), "{stdout}");
    assert!(stdout.contains("\"outcome\":\"updated\""), "{stdout}");
    assert!(
        stdout.contains("ok: "),
        "verify printed its verdict: {stdout}"
    );
    let history = std::fs::read_to_string(directory.path().join("history.json")).unwrap();
    assert!(history.contains("RoleChanged"), "{history}");
}
