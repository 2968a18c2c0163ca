//! The real binary on a real socket: start-up line, health check, clean stop on SIGTERM
//! with the logins in flight finished and durable, and token revocation across a restart.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Barrier, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

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

/// Starts `jitledger serve` on a free port and returns it with the address it printed and
/// the bootstrap admin token, when it printed one (a fresh data directory).
fn start(data_dir: &std::path::Path) -> (Server, String, Option<String>) {
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
    let mut admin_token = None;
    let line = loop {
        let line = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("server printed its address in time")
            .expect("read server stdout");
        if let Some(token) = line.strip_prefix("admin token: ") {
            assert!(token.starts_with("jlt."), "{line:?}");
            admin_token = Some(token.trim_end().to_string());
            continue;
        }
        break line;
    };

    let address = line
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected start-up line: {line:?}"))
        .to_owned();
    (server, address, admin_token)
}

/// One HTTP/1.1 GET over a fresh connection; answers the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    call(address, "GET", path, None, None)
}

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream
}

/// The head of a request with a body of `length` bytes (or none).
fn request_head(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, usize)>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some((content_type, length)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
        ));
    }
    head.push_str("\r\n");
    head
}

/// One HTTP/1.1 request over a fresh connection; answers the status code and the body.
fn call(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> (u16, String) {
    let mut stream = connect(address);
    let head = request_head(
        address,
        method,
        path,
        token,
        body.map(|(content_type, bytes)| (content_type, bytes.len())),
    );
    stream.write_all(head.as_bytes()).expect("send request");
    if let Some((_, bytes)) = body {
        stream.write_all(bytes).expect("send body");
    }
    read_answer(&mut stream).expect("read response")
}

/// A JSON request; answers the status and the JSON body (null when there is none).
fn call_json(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (status, answer) = call(
        address,
        method,
        path,
        token,
        text.as_deref().map(|t| ("application/json", t.as_bytes())),
    );
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// Reads a whole answer (the server closes the connection after it).
fn read_answer(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.is_empty() {
        // Closed without an answer (e.g. a connection the server never read from).
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    Ok((status, body.to_owned()))
}

fn terminate(server: &Server) {
    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM failed: {kill}");
}

/// Waits for a server told to stop; answers its exit status.
fn stopped(server: &mut Server) -> ExitStatus {
    wait_with_timeout(&mut server.child, STOP_TIMEOUT)
        .expect("server stopped within the timeout after SIGTERM")
}

fn stop(server: &mut Server) -> ExitStatus {
    terminate(server);
    stopped(server)
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
    let (mut server, address, token) = start(&data_dir);
    assert!(data_dir.is_dir(), "serve creates the data directory");
    assert!(
        token.is_some(),
        "a fresh data directory prints the bootstrap admin token"
    );

    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);

    let status = stop(&mut server);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );

    // A second start on the same data directory keeps the token's hash and prints nothing.
    let (mut again, address, token) = start(&data_dir);
    assert!(
        token.is_none(),
        "the bootstrap admin token is printed only once"
    );
    assert_eq!(get(&address, "/healthz").0, 200);
    stop(&mut again);
}

const SP: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";
const IDP: &str = "https://idp.example.com/metadata";
/// Logins whose body is cut in two around SIGTERM: certainly in flight when it comes.
const LOGINS_CUT_MAX: usize = 6;
/// Logins sent whole, concurrently, as SIGTERM comes.
const LOGINS_RACING_MAX: usize = 10;

fn create_org(address: &str, admin: &str, org: &str) {
    let (status, body) = call_json(
        address,
        "POST",
        "/v1/orgs",
        Some(admin),
        Some(json!({ "org_id": org, "sp_entity_id": SP, "acs_url": ACS })),
    );
    assert_eq!(status, 201, "{body}");
}

/// Issues a token of `org`: (token, token ID).
fn issue_token(address: &str, admin: &str, org: &str, scope: &str) -> (String, String) {
    let (status, body) = call_json(
        address,
        "POST",
        &format!("/v1/orgs/{org}/tokens"),
        Some(admin),
        Some(json!({ "scope": scope })),
    );
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let token_id = body["token_id"].as_str().expect("token_id").to_string();
    assert!(
        token.contains(&format!(".{token_id}.")),
        "the token ID is the one inside the token"
    );
    (token, token_id)
}

fn error_code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
}

#[test]
fn a_revoked_token_is_refused_from_then_on_and_after_a_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let (mut server, address, bootstrap) = start(&data_dir);
    let bootstrap = bootstrap.expect("fresh data directory prints the token");
    create_org(&address, &bootstrap, "acme");
    create_org(&address, &bootstrap, "beta");
    let (read, read_id) = issue_token(&address, &bootstrap, "acme", "read");
    let (admin, admin_id) = issue_token(&address, &bootstrap, "acme", "admin");
    let (beta_admin, _) = issue_token(&address, &bootstrap, "beta", "admin");
    let users = "/v1/orgs/acme/users";
    assert_eq!(call_json(&address, "GET", users, Some(&read), None).0, 200);

    // Only an admin token of the org (or the bootstrap token) may revoke.
    let revoke_read = format!("/v1/orgs/acme/tokens/{read_id}");
    let refused = call_json(&address, "DELETE", &revoke_read, Some(&read), None);
    assert_eq!(error_code(&refused), (403, Some("forbidden")));
    let refused = call_json(&address, "DELETE", &revoke_read, Some(&beta_admin), None);
    assert_eq!(error_code(&refused), (403, Some("forbidden")));
    let refused = call_json(&address, "DELETE", &revoke_read, None, None);
    assert_eq!(error_code(&refused), (401, Some("unauthorized")));
    assert_eq!(call_json(&address, "GET", users, Some(&read), None).0, 200);

    // The org's admin token revokes the read token: 204, no body, then 401 for it.
    let (status, body) = call(&address, "DELETE", &revoke_read, Some(&admin), None);
    assert_eq!((status, body.as_str()), (204, ""));
    let refused = call_json(&address, "GET", users, Some(&read), None);
    assert_eq!(error_code(&refused), (401, Some("unauthorized")));

    // Revoking it again, or a token the org never had, is 404.
    let again = call_json(&address, "DELETE", &revoke_read, Some(&admin), None);
    assert_eq!(error_code(&again), (404, Some("not_found")));
    let unknown = call_json(
        &address,
        "DELETE",
        "/v1/orgs/acme/tokens/0000000000000000",
        Some(&admin),
        None,
    );
    assert_eq!(error_code(&unknown), (404, Some("not_found")));
    let unknown_org = call_json(
        &address,
        "DELETE",
        &format!("/v1/orgs/nowhere/tokens/{admin_id}"),
        Some(&bootstrap),
        None,
    );
    assert_eq!(error_code(&unknown_org), (404, Some("unknown_org")));

    // The bootstrap token revokes the org's admin token; the event is in the log.
    let revoke_admin = format!("/v1/orgs/acme/tokens/{admin_id}");
    assert_eq!(
        call(&address, "DELETE", &revoke_admin, Some(&bootstrap), None).0,
        204
    );
    let refused = call_json(&address, "GET", users, Some(&admin), None);
    assert_eq!(error_code(&refused), (401, Some("unauthorized")));
    let (_, log) = call_json(&address, "GET", "/v1/events", Some(&bootstrap), None);
    let revoked: Vec<&Value> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "TokenRevoked")
        .map(|e| &e["data"]["token_id"])
        .collect();
    assert_eq!(revoked, [&json!(read_id), &json!(admin_id)]);
    assert_eq!(stop(&mut server).code(), Some(0));

    // Revocation is in the log: it holds after a restart.
    let (mut again, address, _) = start(&data_dir);
    for token in [&read, &admin] {
        let refused = call_json(&address, "GET", users, Some(token), None);
        assert_eq!(error_code(&refused), (401, Some("unauthorized")));
    }
    assert_eq!(
        call_json(
            &address,
            "GET",
            "/v1/orgs/beta/users",
            Some(&beta_admin),
            None
        )
        .0,
        200
    );
    assert_eq!(stop(&mut again).code(), Some(0));
}

/// The directory of the built binaries; idp-sim (the test IdP of the tools crate) is built
/// there when missing.
fn binaries() -> PathBuf {
    let jitledger = PathBuf::from(env!("CARGO_BIN_EXE_jitledger"));
    let directory = jitledger.parent().expect("binary directory").to_path_buf();
    if !directory.join("idp-sim").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "jitledger-tools", "--bin", "idp-sim"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building idp-sim");
    }
    directory
}

fn idp_sim(binaries: &Path, args: &[&str]) -> String {
    let output = Command::new(binaries.join("idp-sim"))
        .args(args)
        .output()
        .expect("run idp-sim");
    assert!(output.status.success(), "idp-sim {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("idp-sim prints text")
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The form body of a fresh signed login of `name_id` with enough attributes to provision.
fn signed_login(binaries: &Path, name_id: &str) -> Vec<u8> {
    let email = format!("emailAddress={name_id}");
    let response = idp_sim(
        binaries,
        &[
            "sign",
            "--idp-entity-id",
            IDP,
            "--sp-entity-id",
            SP,
            "--acs-url",
            ACS,
            "--name-id",
            name_id,
            "--random-ids",
            "--base64",
            "--attribute",
            &email,
            "--attribute",
            "firstName=In",
            "--attribute",
            "lastName=Flight",
        ],
    );
    format!("SAMLResponse={}", form_encode(response.trim())).into_bytes()
}

/// The server's own count of requests in flight, from `/metrics`.
fn requests_in_flight(address: &str) -> usize {
    let (status, metrics) = get(address, "/metrics");
    assert_eq!(status, 200);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("jitledger_http_requests_in_flight "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no requests-in-flight gauge in {metrics}"))
}

/// What a login that got a 2xx answered: its user and the events it says are durable.
fn accepted(answer: &str) -> (String, Vec<(u64, String)>) {
    let answer: Value = serde_json::from_str(answer).expect("a login answer is JSON");
    let events = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().expect("seq"),
                e["type"].as_str().expect("type").to_string(),
            )
        })
        .collect();
    (
        answer["user_id"].as_str().expect("user_id").to_string(),
        events,
    )
}

#[test]
fn logins_in_flight_at_sigterm_finish_and_are_in_the_log_after_restart() {
    let binaries = binaries();
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let (mut server, address, admin) = start(&data_dir);
    let admin = admin.expect("fresh data directory prints the token");
    create_org(&address, &admin, "acme");
    let metadata = idp_sim(
        &binaries,
        &[
            "metadata",
            "--entity-id",
            IDP,
            "--sso-url",
            "https://idp.example.com/sso",
        ],
    );
    let (status, body) = call(
        &address,
        "PUT",
        "/v1/orgs/acme/idps/okta",
        Some(&admin),
        Some(("application/samlmetadata+xml", metadata.as_bytes())),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = call_json(
        &address,
        "PUT",
        "/v1/orgs/acme/idps/okta/jit",
        Some(&admin),
        Some(json!({ "enabled": true })),
    );
    assert_eq!(status, 200, "{body}");
    let login_path = "/v1/orgs/acme/saml/acs";
    let form = "application/x-www-form-urlencoded";

    // Logins whose head and half their body are sent before SIGTERM, the rest after.
    let mut cut = Vec::new();
    for n in 0..LOGINS_CUT_MAX {
        let body = signed_login(&binaries, &format!("cut-{n}@example.com"));
        let mut stream = connect(&address);
        let head = request_head(&address, "POST", login_path, None, Some((form, body.len())));
        let half = body.len() / 2;
        stream.write_all(head.as_bytes()).expect("send head");
        stream.write_all(&body[..half]).expect("send half the body");
        cut.push((stream, body[half..].to_vec()));
    }
    // Logins sent whole by threads released together just before SIGTERM.
    let start_line = Arc::new(Barrier::new(LOGINS_RACING_MAX + 1));
    let racing: Vec<_> = (0..LOGINS_RACING_MAX)
        .map(|n| {
            let body = signed_login(&binaries, &format!("racing-{n}@example.com"));
            let address = address.clone();
            let start_line = Arc::clone(&start_line);
            thread::spawn(move || {
                let mut stream = connect(&address);
                let head =
                    request_head(&address, "POST", login_path, None, Some((form, body.len())));
                start_line.wait();
                stream.write_all(head.as_bytes())?;
                stream.write_all(&body)?;
                read_answer(&mut stream)
            })
        })
        .collect();
    // The cut requests are in flight once the server counts them (and the /metrics call).
    let deadline = Instant::now() + START_TIMEOUT;
    while requests_in_flight(&address) < LOGINS_CUT_MAX + 1 {
        assert!(
            Instant::now() < deadline,
            "the cut logins never got in flight"
        );
        thread::sleep(Duration::from_millis(20));
    }
    start_line.wait();
    terminate(&server);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "after SIGTERM the server takes no new connection"
        );
        thread::sleep(Duration::from_millis(20));
    }

    let mut durable = Vec::new();
    for (mut stream, rest) in cut {
        stream
            .write_all(&rest)
            .expect("send the rest of the body after SIGTERM");
        let (status, answer) = read_answer(&mut stream).expect("an answer after SIGTERM");
        assert_eq!(
            status, 200,
            "a login in flight at SIGTERM finishes: {answer}"
        );
        durable.push(accepted(&answer));
    }
    let mut racing_accepted = 0;
    for racer in racing {
        // A racing login may have come after the listener closed: then it has no answer.
        if let Ok((status, answer)) = racer.join().expect("racing thread") {
            if (200..300).contains(&status) {
                durable.push(accepted(&answer));
                racing_accepted += 1;
            } else {
                assert_eq!(status, 503, "{answer}");
            }
        }
    }
    let status = stopped(&mut server);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    eprintln!(
        "{} logins acknowledged ({racing_accepted} of {LOGINS_RACING_MAX} racing)",
        durable.len()
    );

    // Every acknowledged login is in the log after a restart, event for event.
    let verify = Command::new(env!("CARGO_BIN_EXE_jitledger"))
        .args(["verify", "--data"])
        .arg(&data_dir)
        .output()
        .expect("run verify");
    assert!(verify.status.success(), "verify: {verify:?}");
    let (mut again, address, _) = start(&data_dir);
    let (status, log) = call_json(&address, "GET", "/v1/events?limit=1000", Some(&admin), None);
    assert_eq!(status, 200);
    let logged: Vec<(u64, String)> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["type"].to_string().replace('"', ""),
            )
        })
        .collect();
    for (user_id, events) in &durable {
        assert_eq!(
            events
                .iter()
                .map(|(_, kind)| kind.as_str())
                .collect::<Vec<_>>(),
            ["UserProvisioned", "LoginRecorded"]
        );
        for event in events {
            assert!(
                logged.contains(event),
                "{user_id}: {event:?} not in the log"
            );
        }
        let path = format!("/v1/orgs/acme/users/{}", user_id.replace('@', "%40"));
        assert_eq!(call_json(&address, "GET", &path, Some(&admin), None).0, 200);
    }
    assert_eq!(stop(&mut again).code(), Some(0));
}
