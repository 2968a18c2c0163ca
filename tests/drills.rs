//! Fault drills through the HTTP path, short versions (the long ones: `tools/drill`).
//!
//! * SIGKILL under login load: the real server is killed at seeded random moments while
//!   clients post logins; after every restart, every login that was answered 200 is there,
//!   and at the end `jitledger verify` passes (chain intact, projections equal a replay).
//! * A storm of malformed input at every route gets 4xx answers only, and the server then
//!   still serves a login.
//! * Thousands of idle connections and slow clients do not starve logins.
//!
//! `DRILL_KILLS` and `DRILL_SEED` override the number of kills and the seed. On a failure
//! the data directory is kept and printed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jitledger_tools::client::{Connection, url_encode};
use jitledger_tools::idp::{
    Attribute, ResponseSpec, fixture_key, metadata_xml, post_binding_value, random_id,
};
use time::OffsetDateTime;

const SERVER: &str = env!("CARGO_BIN_EXE_jitledger");
const ADMIN: &str = "jlt._.bootstrap.d7a11d7a11d7a11d7a11d7a11d7a11d7a11d7a11d7a11d7";
const ORG: &str = "drill";
const IDP: &str = "https://idp.drill.example.com/metadata";
const SP: &str = "https://sp.drill.example.com/metadata";
const ACS: &str = "https://sp.drill.example.com/acs";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The server process; killed if a test fails before stopping it.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(SERVER)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("JITLEDGER_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn jitledger serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = sender.send(address.to_string());
                }
            }
        });
        let url = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("the server printed its address");
        Server { child, url }
    }

    fn connection(&self) -> Connection {
        Connection::open(&self.url).expect("connect")
    }

    fn kill(&mut self) {
        // SIGKILL: no flush, no shutdown path.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    fn stop(self) {
        let status = self.terminate();
        assert!(status.success(), "serve exited with {status} after SIGTERM");
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The org with the test IdP, JIT on.
fn set_up(server: &Server) {
    let mut connection = server.connection();
    let org = serde_json::json!({ "org_id": ORG, "sp_entity_id": SP, "acs_url": ACS });
    let answer = connection
        .call(
            "POST",
            "/v1/orgs",
            Some(ADMIN),
            Some(("application/json", org.to_string().as_bytes())),
        )
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.code);
    let signer = fixture_key("rsa2048").unwrap();
    let metadata = metadata_xml(
        IDP,
        "https://idp.drill.example.com/sso",
        signer.certificate_pem(),
    );
    let answer = connection
        .call(
            "PUT",
            &format!("/v1/orgs/{ORG}/idps/idp"),
            Some(ADMIN),
            Some(("application/xml", metadata.as_bytes())),
        )
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.code);
    let answer = connection
        .call(
            "PUT",
            &format!("/v1/orgs/{ORG}/idps/idp/jit"),
            Some(ADMIN),
            Some(("application/json", br#"{"enabled": true}"#)),
        )
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.code);
}

/// `jitledger verify` on a stopped server's data directory.
fn verify(data: &Path) -> std::process::Output {
    Command::new(SERVER)
        .args(["verify", "--data"])
        .arg(data)
        .output()
        .expect("run jitledger verify")
}

fn user(name: &str) -> String {
    format!("{name}@drill.example.com")
}

/// The ACS form body of a fresh login of `name`.
fn login_form(name: &str) -> Vec<u8> {
    let email = user(name);
    let xml = ResponseSpec::new(IDP, SP, ACS, &email, OffsetDateTime::now_utc())
        .valid_for(time::Duration::hours(1))
        .ids(&random_id().unwrap(), &random_id().unwrap())
        .attribute(Attribute::new("emailAddress", [email.as_str()]))
        .attribute(Attribute::new("firstName", ["Drill"]))
        .attribute(Attribute::new("lastName", [name]))
        .signed_xml(&fixture_key("rsa2048").unwrap())
        .unwrap();
    format!("SAMLResponse={}", url_encode(&post_binding_value(&xml))).into_bytes()
}

fn post_login(connection: &mut Connection, form: &[u8]) -> Result<u16, String> {
    connection
        .call(
            "POST",
            &format!("/v1/orgs/{ORG}/saml/acs"),
            None,
            Some(("application/x-www-form-urlencoded", form)),
        )
        .map(|answer| answer.status)
}

fn user_status(connection: &mut Connection, name: &str) -> u16 {
    connection
        .call(
            "GET",
            &format!("/v1/orgs/{ORG}/users/{}", user(name).replace('@', "%40")),
            Some(ADMIN),
            None,
        )
        .unwrap()
        .status
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
    })
}

/// xorshift64*, seeded: the kill schedule is reproducible, the timing is not.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn sigkill_under_login_load_loses_no_acknowledged_login() {
    const CLIENTS: usize = 8;
    const LOGINS_PER_ROUND: usize = 400;
    let kills = env_u64("DRILL_KILLS", 4);
    let seed = env_u64("DRILL_SEED", 0xd111_5eed);
    let mut random = seed | 1;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keep_on_failure = |what: String| -> ! {
        let kept = tempfile::TempDir::keep(tempfile::tempdir().unwrap());
        let _ = std::fs::rename(&data, kept.join("data"));
        panic!(
            "drill FAILED (seed {seed}): {what}\ndata directory kept: {}",
            kept.join("data").display()
        );
    };
    let mut acknowledged: Vec<String> = Vec::new();
    let mut server = Server::start(&data);
    set_up(&server);
    for round in 0..kills {
        let forms: Vec<(String, Vec<u8>)> = (0..LOGINS_PER_ROUND)
            .map(|i| {
                let name = format!("r{round}-u{i}");
                let form = login_form(&name);
                (name, form)
            })
            .collect();
        let next = AtomicUsize::new(0);
        let acked = Mutex::new(Vec::new());
        let delay = Duration::from_millis(100 + next_random(&mut random) % 500);
        let url = server.url.clone();
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                scope.spawn(|| {
                    let Ok(mut connection) = Connection::open(&url) else {
                        return;
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((name, form)) = forms.get(i) else {
                            return;
                        };
                        match post_login(&mut connection, form) {
                            Ok(200) => acked.lock().unwrap().push(name.clone()),
                            Ok(_) => {}
                            // The server is gone: this login's outcome is unknown.
                            Err(_) => return,
                        }
                    }
                });
            }
            // The delay runs from the first acknowledgement, so that a slow start (a loaded
            // machine, a debug build) cannot make a round in which nothing was at stake.
            let waiting = Instant::now();
            while acked.lock().unwrap().is_empty()
                && next.load(Ordering::Relaxed) < forms.len()
                && waiting.elapsed() < START_TIMEOUT
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(delay);
            server.kill();
        });
        let acked = acked.into_inner().unwrap();
        assert!(
            !acked.is_empty(),
            "no login was acknowledged before kill {}: the round proves nothing",
            round + 1
        );
        acknowledged.extend(acked);
        server = Server::start(&data);
        let mut connection = server.connection();
        for name in &acknowledged {
            let status = user_status(&mut connection, name);
            if status != 200 {
                keep_on_failure(format!(
                    "after kill {}, the acknowledged login of {name} is gone ({status})",
                    round + 1
                ));
            }
        }
    }
    server.stop();
    let verify = verify(&data);
    if !verify.status.success() {
        keep_on_failure(format!(
            "verify failed: {}",
            String::from_utf8_lossy(&verify.stdout)
        ));
    }
    eprintln!(
        "drill: {kills} kills, {} logins acknowledged, 0 lost",
        acknowledged.len()
    );
}

/// Malformed requests for every route of CONTRACT.md: bad bodies, bad parameters, bad
/// identifiers, oversized bodies. Each must get a 4xx, never a 5xx or a dropped connection.
fn malformed_requests() -> Vec<(&'static str, String, &'static str, Vec<u8>)> {
    let big = |bytes: usize| vec![b'a'; bytes];
    let billion_laughs = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><EntityDescriptor>&b;</EntityDescriptor>"#.to_vec();
    let json = "application/json";
    let xml = "application/xml";
    let form = "application/x-www-form-urlencoded";
    let org = format!("/v1/orgs/{ORG}");
    let mut requests: Vec<(&'static str, String, &'static str, Vec<u8>)> = Vec::new();
    for body in [
        b"".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        br#"{"org_id": 5}"#.to_vec(),
        br#"{"org_id": "x\u0000y", "sp_entity_id": "a", "acs_url": "b"}"#.to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        big(128 * 1024),
    ] {
        requests.push(("POST", "/v1/orgs".into(), json, body.clone()));
        requests.push(("PUT", format!("{org}/idps/idp/jit"), json, body.clone()));
        requests.push(("PUT", format!("{org}/roles/Auditor"), json, body.clone()));
        requests.push(("POST", format!("{org}/tokens"), json, body.clone()));
    }
    for body in [
        b"".to_vec(),
        b"<x".to_vec(),
        billion_laughs.clone(),
        vec![0xff, 0xfe, 0x00, 0x80],
        b"<EntityDescriptor xmlns=\"urn:oasis:names:tc:SAML:2.0:metadata\"/>".to_vec(),
        big(5 * 1024 * 1024),
    ] {
        requests.push(("PUT", format!("{org}/idps/other"), xml, body));
    }
    let base64_of = |bytes: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    for body in [
        b"".to_vec(),
        b"SAMLResponse=%%%".to_vec(),
        b"SAMLResponse=not-base64!".to_vec(),
        format!("SAMLResponse={}", base64_of(b"<garbage")).into_bytes(),
        format!("SAMLResponse={}", base64_of(&billion_laughs)).into_bytes(),
        format!("SAMLResponse={}", base64_of(&[0xff, 0x00, 0xfe])).into_bytes(),
        big(2 * 1024 * 1024),
    ] {
        for route in ["saml/acs", "logins", "logins/preview"] {
            requests.push(("POST", format!("{org}/{route}"), form, body.clone()));
        }
    }
    for body in [b"{".to_vec(), br#"{"saml_response": 7}"#.to_vec()] {
        requests.push(("POST", format!("{org}/logins"), json, body.clone()));
        requests.push(("POST", format!("{org}/logins/preview"), json, body));
    }
    for path in [
        "/v1/events?after=abc".to_string(),
        "/v1/events?after=-1".into(),
        "/v1/events?limit=99999999999999999999999".into(),
        format!("{org}/users?limit=abc"),
        format!("{org}/users?cursor=%FF%FE"),
        format!("{org}/users/%00"),
        format!("{org}/users/%FF/history"),
        format!("{org}/acl?on_type=NOPE&on=x"),
        format!("{org}/acl"),
        format!("{org}/logins/rejected?limit=x"),
        format!("{org}/idps/nope/login"),
        format!(
            "{org}/idps/idp/login?relay_state={}",
            "r".repeat(100 * 1024)
        ),
        "/v1/orgs/%00/saml/metadata".into(),
        "/v1/orgs/nope/users/alice".into(),
    ] {
        requests.push(("GET", path, json, Vec::new()));
    }
    requests
}

#[test]
fn a_storm_of_malformed_input_gets_only_4xx_and_logins_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    set_up(&server);
    let mut connection = server.connection();
    let mut wrong = Vec::new();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let requests = malformed_requests();
    for (method, path, content_type, body) in &requests {
        for token in [Some(ADMIN), None] {
            let shown = format!(
                "{method} {} ({} bytes, token: {})",
                &path[..path.len().min(80)],
                body.len(),
                token.is_some()
            );
            match connection.call(method, path, token, Some((content_type, body))) {
                // Every refusal carries the error body of CONTRACT.md, but for hyper's own
                // answer to a request line too long to read (414).
                Ok(answer) if answer.code.is_empty() && answer.status != 414 => {
                    wrong.push(format!("{shown}: {} without an error code", answer.status));
                }
                Ok(answer) if (400..500).contains(&answer.status) => {
                    *answers
                        .entry(format!("{} {}", answer.status, answer.code))
                        .or_default() += 1;
                }
                Ok(answer) => wrong.push(format!("{shown}: {} {}", answer.status, answer.code)),
                Err(error) => {
                    wrong.push(format!("{shown}: no answer: {error}"));
                    connection = server.connection();
                }
            }
        }
    }
    // Garbage that is not HTTP at all.
    for garbage in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/orgs HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ] {
        let mut raw =
            std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(garbage).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&raw).read_line(&mut line);
        if !line.is_empty() && !line.contains(" 4") {
            wrong.push(format!("raw {garbage:?}: {line:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} malformed requests were not answered 4xx:\n{}",
        wrong.len(),
        requests.len() * 2,
        wrong.join("\n")
    );
    eprintln!("drill: malformed input answered {answers:?}");
    let mut connection = server.connection();
    assert_eq!(
        post_login(&mut connection, &login_form("after-storm")),
        Ok(200)
    );
    server.stop();
}

/// The open-files limit of this process: the server inherits it.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn idle_connections_and_slow_clients_do_not_starve_logins() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    set_up(&server);
    let address = server.url.trim_start_matches("http://").to_string();
    // Idle connections: as many as both processes' open-file limits allow, up to 2,000.
    let idle_target = 2_000.min(open_files_limit().saturating_sub(200) / 2);
    let mut idle = Vec::with_capacity(idle_target);
    for _ in 0..idle_target {
        idle.push(TcpStream::connect(&address).expect("an idle connection"));
    }
    // Slow clients: a request head sent a few bytes at a time, never finished.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .write_all(b"POST /v1/orgs/drill/saml/acs HTTP/1.1\r\nHost: x\r\nContent-Le")
            .unwrap();
        slow.push(stream);
    }
    let form = login_form("while-crowded");
    let started = Instant::now();
    let mut connection = server.connection();
    let status = post_login(&mut connection, &form);
    let took = started.elapsed();
    assert_eq!(
        status,
        Ok(200),
        "a login while {idle_target} connections idle and 50 are slow"
    );
    // A liveness bound, not a speed goal: starvation would mean waiting for the idle
    // connections to time out (tens of seconds) or forever.
    assert!(took < Duration::from_secs(10), "the login took {took:?}");
    for stream in &mut slow {
        let _ = stream.write_all(b"ngth: 10\r\n");
    }
    let mut connection = server.connection();
    assert_eq!(
        post_login(&mut connection, &login_form("still-served")),
        Ok(200)
    );
    eprintln!("drill: {idle_target} idle and 50 slow connections; a login answered in {took:?}");
    drop(idle);
    drop(slow);
    server.stop();
}

/// Runs `command` as root: directly when this process is root, else through `sudo -n`.
fn as_root(command: &[&str]) -> std::process::Output {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    });
    let mut process = if root {
        Command::new(command[0])
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-n").arg(command[0]);
        sudo
    };
    process.args(&command[1..]).output().unwrap_or_else(|error| {
        panic!("{command:?}: {error} (the disk-full drill mounts a small tmpfs: run as root or with password-less sudo)")
    })
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let mounted = as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            path.to_str().unwrap(),
        ]);
        assert!(
            mounted.status.success(),
            "mounting a tmpfs failed ({}): the disk-full drill needs root or password-less sudo",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    fn grow(&self, size: &str) {
        let remounted = as_root(&[
            "mount",
            "-o",
            &format!("remount,size={size}"),
            self.path.to_str().unwrap(),
        ]);
        assert!(
            remounted.status.success(),
            "{}",
            String::from_utf8_lossy(&remounted.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root(&["umount", "-l", self.path.to_str().unwrap()]);
    }
}

#[test]
fn a_full_disk_refuses_logins_with_503_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("small"), "6m");
    let data = disk.path.join("data");
    let server = Server::start(&data);
    set_up(&server);
    let mut connection = server.connection();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0.. {
        let name = format!("full-{i}");
        let answer = connection
            .call(
                "POST",
                &format!("/v1/orgs/{ORG}/saml/acs"),
                None,
                Some(("application/x-www-form-urlencoded", &login_form(&name))),
            )
            .unwrap();
        match (answer.status, answer.code.as_str()) {
            (200, _) => acknowledged.push(name),
            (503, "storage_unavailable") => {
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            (status, _) => panic!(
                "login {i} on a filling disk: {status} {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
        assert!(i < 20_000, "6 MiB never filled up");
    }
    assert!(
        !acknowledged.is_empty(),
        "the disk was full before the first login"
    );
    // Once the log failed to write, nothing is acknowledged on top of it, and the refusal
    // says why.
    let answer = connection
        .call(
            "POST",
            &format!("/v1/orgs/{ORG}/saml/acs"),
            None,
            Some((
                "application/x-www-form-urlencoded",
                &login_form("after-full"),
            )),
        )
        .unwrap();
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (503, "storage_unavailable")
    );
    // Liveness says so, for the supervisor that restarts the service.
    let health = connection.call("GET", "/healthz", None, None).unwrap();
    assert_eq!(
        (health.status, health.code.as_str()),
        (503, "storage_unavailable")
    );
    // A server whose log refused a write exits 3, the operational error, however its
    // close goes: its supervisor must know that it stopped on a storage failure.
    let status = server.terminate();
    assert_eq!(
        status.code(),
        Some(3),
        "serve after a failed write, on SIGTERM"
    );
    disk.grow("64m");
    let server = Server::start(&data);
    let mut connection = server.connection();
    for name in &acknowledged {
        assert_eq!(
            user_status(&mut connection, name),
            200,
            "acknowledged login of {name} lost"
        );
    }
    assert_eq!(
        connection
            .call("GET", "/healthz", None, None)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        post_login(&mut connection, &login_form("space-returned")),
        Ok(200)
    );
    server.stop();
    let verify = verify(&data);
    assert!(
        verify.status.success(),
        "verify after a full disk: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!(
        "drill: disk full after {} acknowledged logins; 503 storage_unavailable after; recovered on restart",
        acknowledged.len()
    );
}
