//! The real binary on a real socket: start-up line, health check and clean stop on SIGTERM.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the server if the test fails before it stops it, so no process outlives the test.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `jitledger serve` on a free port and returns it with the address it printed.
fn start(data_dir: &std::path::Path) -> (Server, String, bool) {
    let child = Command::new(env!("CARGO_BIN_EXE_jitledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn jitledger");
    let mut server = Server { child };
    let stdout = server.child.stdout.take().expect("piped stdout");

    // Read the start-up line on a thread so a server that never prints fails the test
    // after a timeout instead of hanging it.
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        // A fresh data directory first prints the bootstrap admin token, once.
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            let result = reader.read_line(&mut line).map(|_| line);
            let done = !matches!(&result, Ok(line) if line.starts_with("admin token: "));
            let _ = sender.send(result);
            if done {
                break;
            }
        }
    });
    let mut admin_token_printed = false;
    let line = loop {
        let line = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("server printed its address in time")
            .expect("read server stdout");
        if line.starts_with("admin token: jlt.") {
            admin_token_printed = true;
            continue;
        }
        break line;
    };

    let address = line
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected start-up line: {line:?}"))
        .to_owned();
    (server, address, admin_token_printed)
}

/// One HTTP/1.1 GET over a fresh connection; answers the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");

    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, body.to_owned())
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn serve_answers_healthz_and_stops_cleanly_on_sigterm() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let (mut server, address, token_printed) = start(&data_dir);
    assert!(data_dir.is_dir(), "serve creates the data directory");
    assert!(
        token_printed,
        "a fresh data directory prints the bootstrap admin token"
    );

    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM failed: {kill}");
    let status = wait_with_timeout(&mut server.child, STOP_TIMEOUT)
        .expect("server stopped within the timeout after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );

    // A second start on the same data directory keeps the token's hash and prints nothing.
    let (mut again, address, token_printed) = start(&data_dir);
    assert!(
        !token_printed,
        "the bootstrap admin token is printed only once"
    );
    assert_eq!(get(&address, "/healthz").0, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &again.child.id().to_string()])
        .status();
    assert!(wait_with_timeout(&mut again.child, STOP_TIMEOUT).is_some());
}
