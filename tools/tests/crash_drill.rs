//! The crash drill, short: `crash-writer` appends from four threads and is SIGKILLed after
//! a seeded 50–400 ms, again and again on one data directory; after every kill
//! `crash-writer check` (a fresh process) must find every append ever acknowledged, and
//! `Store::verify` must pass. The long run is `tools/crash-drill`.
//!
//! `CRASH_DRILL_SEED` and `CRASH_DRILL_ROUNDS` override the seed and the number of kills.
//! On a failure the data directory is kept and its path and the seed are printed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_crash-writer");
const DEFAULT_SEED: u64 = 0x5eed_c0de;
const DEFAULT_ROUNDS: u64 = 24;
const THREADS: &str = "4";

/// The same xorshift the writer seeds from `--seed`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// Keeps the directory and fails loudly with everything needed to reproduce.
fn failed(dir: tempfile::TempDir, seed: u64, round: u64, what: &str) -> ! {
    let kept = dir.keep();
    panic!(
        "crash drill FAILED in round {round} (drill seed {seed}): {what}\n\
         data directory kept: {}",
        kept.join("data").display()
    );
}

fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // The pipe ends when the killed writer is gone; an error only cuts what we keep.
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

/// Appends this run's complete ack lines to `acks`; returns (lines, whether a last line was
/// cut short).
fn keep_acks(acks: &Path, mut output: Vec<u8>) -> (u64, bool) {
    let cut = output.last().is_some_and(|b| *b != b'\n');
    if cut {
        let end = output
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        output.truncate(end);
    }
    let lines = output.iter().filter(|b| **b == b'\n').count() as u64;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acks)
        .and_then(|mut file| file.write_all(&output))
        .expect("appending to the acks file");
    (lines, cut)
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = env_u64("CRASH_DRILL_SEED", DEFAULT_SEED);
    let rounds = env_u64("CRASH_DRILL_ROUNDS", DEFAULT_ROUNDS);
    let mut rng = XorShift(seed | 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let acks = dir.path().join("acks");
    let started = Instant::now();
    let (mut total_acks, mut cut_lines) = (0u64, 0u64);
    let mut last_check = String::new();
    for round in 1..=rounds {
        let run_seed = rng.next();
        let run_for = Duration::from_millis(50 + rng.next() % 351);
        let mut child = Command::new(WRITER)
            .arg("--data")
            .arg(&data)
            .args(["--seed", &run_seed.to_string(), "--threads", THREADS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning crash-writer");
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        std::thread::sleep(run_for);
        let early = child.try_wait().expect("polling crash-writer");
        // SIGKILL on Unix.
        let _ = child.kill();
        child.wait().expect("reaping crash-writer");
        let output = stdout.join().expect("stdout reader");
        let errors = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
        let (lines, cut) = keep_acks(&acks, output);
        total_acks += lines;
        cut_lines += u64::from(cut);
        if let Some(status) = early {
            failed(
                dir,
                seed,
                round,
                &format!("crash-writer (seed {run_seed}) exited by itself: {status}\n{errors}"),
            );
        }
        let check = Command::new(WRITER)
            .arg("check")
            .arg("--data")
            .arg(&data)
            .arg("--acks")
            .arg(&acks)
            .output()
            .expect("running crash-writer check");
        last_check = String::from_utf8_lossy(&check.stdout).trim().to_string();
        if !check.status.success() {
            failed(
                dir,
                seed,
                round,
                &format!(
                    "check after killing crash-writer (seed {run_seed}, {} ms) exited {}:\n{}\n{}",
                    run_for.as_millis(),
                    check.status,
                    last_check,
                    String::from_utf8_lossy(&check.stderr)
                ),
            );
        }
        eprintln!(
            "round {round}: seed {run_seed}, killed after {} ms, {lines} acks; {}",
            run_for.as_millis(),
            last_check.lines().next().unwrap_or("")
        );
    }
    eprintln!(
        "crash drill (seed {seed}): kills {rounds}, acknowledged appends {total_acks}, lost 0, \
         cut ack lines {cut_lines}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        total_acks > 0,
        "no append was acknowledged in {rounds} rounds: the drill proved nothing"
    );
    assert!(last_check.contains("lost 0"), "{last_check}");
}
