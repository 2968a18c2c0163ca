//! A real SP-initiated login against a live IdP: SimpleSAMLphp from Debian's packages
//! (`simplesamlphp`, `php-cli`, `php-xml`; `tools/test` installs them), configured and served by
//! `tools/simplesamlphp/setup` on a free port, and the real `jitledger` binary.
//!
//! The browser's part is played by a small HTTP client over `TcpStream` that keeps the
//! IdP's cookies, follows its redirects, fills in its login form and reads the
//! auto-submitting form that carries the SAMLResponse to jitledger's ACS.

use jitledger::cli::client::dechunk;
use jitledger_tools::client::url_encode;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const ADMIN: &str = "jlt._.bootstrap.5afe1d9e0c2b4f7a8e6d1c3b5a7f9e0d2c4b6a8f0e1d3c5b";
const ORG: &str = "acme";
const IDP: &str = "simplesamlphp";
const SP_ENTITY_ID: &str = "https://jitledger.test/sp/acme";
const SETUP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/simplesamlphp/setup");
const INSTALL_HINT: &str = "the live IdP test needs php and SimpleSAMLphp: tools/test installs \
     them (apt-get install -y simplesamlphp php-cli php-xml openssl)";

/// A child process started in its own process group; dropping it stops the whole group
/// (the setup script and the `php -S` it serves with), so nothing outlives the test.
struct Group {
    child: Child,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `command` in a new process group and waits until it prints a line starting
/// with `listening on http://`; answers the group, the address and the lines before it.
fn spawn_until_listening(
    mut command: Command,
    what: &str,
) -> Result<(Group, String, Vec<String>), String> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    let mut group = Group { child };
    let stdout = group.child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            let done = line.starts_with("listening on http://");
            if sender.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut before = Vec::new();
    loop {
        match receiver.recv_timeout(START_TIMEOUT) {
            Ok(line) => match line.strip_prefix("listening on http://") {
                Some(address) => return Ok((group, address.trim().to_string(), before)),
                None => before.push(line),
            },
            Err(_) => {
                // Stopped without an address, or none in time: let the process finish.
                drop(receiver);
                let status = group.child.try_wait().ok().flatten();
                return Err(format!(
                    "{what} did not print its address (exit status: {status:?})"
                ));
            }
        }
    }
}

/// An HTTP answer with its headers (names lower-cased).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request over a fresh connection to an absolute `http://` URL.
fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("{url}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body).unwrap();
    }
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    parse_answer(&raw).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status code")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn form_body(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", url_encode(name), url_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Resolves a link found at `base` (absolute, absolute-path, or query-only like `?`).
fn resolve(base: &str, link: &str) -> String {
    if link.starts_with("http://") {
        return link.to_string();
    }
    let origin_end = base[7..].find('/').map_or(base.len(), |at| at + 7);
    let origin = &base[..origin_end];
    if link.starts_with('/') {
        return format!("{origin}{link}");
    }
    let path = base.split(['?', '#']).next().unwrap_or(base);
    if link.starts_with('?') {
        return format!("{path}{link}");
    }
    let directory = &path[..path.rfind('/').map_or(path.len(), |at| at + 1)];
    format!("{directory}{link}")
}

/// The browser: a cookie jar (name → value; all on one test host) and redirect following.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn send(&mut self, method: &str, url: &str, form: Option<&str>) -> Answer {
        let cookie = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![("Accept", "text/html")];
        if !cookie.is_empty() {
            headers.push(("Cookie", &cookie));
        }
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let answer = request(method, url, &headers, form.map(str::as_bytes));
        for (name, value) in &answer.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or("");
            if let Some((n, v)) = pair.split_once('=') {
                if v.is_empty() || v == "deleted" {
                    self.cookies.remove(n.trim());
                } else {
                    self.cookies
                        .insert(n.trim().to_string(), v.trim().to_string());
                }
            }
        }
        answer
    }

    /// Sends a request and follows redirects (a POST becomes a GET after 302/303);
    /// answers the final URL and answer.
    fn follow(&mut self, method: &str, url: &str, form: Option<&str>) -> (String, Answer) {
        let mut url = url.to_string();
        let mut answer = self.send(method, &url, form);
        for _ in 0..10 {
            if !matches!(answer.status, 301 | 302 | 303 | 307) {
                return (url, answer);
            }
            let location = answer
                .header("location")
                .unwrap_or_else(|| panic!("redirect without Location from {url}"))
                .to_string();
            url = resolve(&url, &location);
            answer = self.send("GET", &url, None);
        }
        panic!("too many redirects, last {url}");
    }
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x3D;", "=")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// The attributes of the tag that starts at `tag` (`<form ...>`), lower-cased names.
fn tag_attributes(tag: &str) -> BTreeMap<String, String> {
    let end = tag.find('>').unwrap_or(tag.len());
    let mut rest = &tag[..end];
    rest = rest.trim_start_matches('<');
    rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    let mut attributes = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return attributes;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
            let (raw, remaining) = match quote {
                Some(q) => {
                    let close = after[1..].find(q).map_or(after.len(), |at| at + 1);
                    (&after[1..close], after.get(close + 1..).unwrap_or(""))
                }
                None => {
                    let close = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..close], &after[close..])
                }
            };
            value = html_unescape(raw);
            rest = remaining;
        }
        attributes.insert(name, value);
    }
}

/// An HTML form: its action and method, and every named input with its value.
#[derive(Debug)]
struct Form {
    action: String,
    method: String,
    fields: Vec<(String, String)>,
}

impl Form {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.to_string(), value.to_string()));
    }
}

/// The first form of `html` that has an input named `needle`.
fn find_form(html: &str, needle: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<form") {
        let start = from + at;
        let end = lower[start..]
            .find("</form")
            .map_or(html.len(), |e| start + e);
        let attributes = tag_attributes(&html[start..]);
        let mut fields = Vec::new();
        let mut cursor = start;
        while let Some(input) = lower[cursor..end].find("<input") {
            let input_start = cursor + input;
            let input_attributes = tag_attributes(&html[input_start..]);
            let kind = input_attributes
                .get("type")
                .map(|t| t.to_ascii_lowercase())
                .unwrap_or_default();
            if let Some(name) = input_attributes.get("name")
                && kind != "checkbox"
                && kind != "submit"
            {
                let value = input_attributes.get("value").cloned().unwrap_or_default();
                fields.push((name.clone(), value));
            }
            cursor = input_start + 6;
        }
        if fields.iter().any(|(n, _)| n == needle) {
            return Some(Form {
                action: attributes.get("action").cloned().unwrap_or_default(),
                method: attributes
                    .get("method")
                    .cloned()
                    .unwrap_or_else(|| "get".into())
                    .to_ascii_uppercase(),
                fields,
            });
        }
        from = end;
    }
    None
}

/// jitledger on a temp data directory, and the admin API.
struct Jitledger {
    _process: Group,
    base: String,
}

impl Jitledger {
    fn start(data: &Path) -> Jitledger {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jitledger"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("JITLEDGER_ADMIN_TOKEN", ADMIN)
            .stderr(Stdio::null());
        let (process, address, _) =
            spawn_until_listening(command, "jitledger serve").unwrap_or_else(|e| panic!("{e}"));
        Jitledger {
            _process: process,
            base: format!("http://{address}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn admin(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let authorization = format!("Bearer {ADMIN}");
        let mut headers = vec![("Authorization", authorization.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", content_type));
        }
        let body = (!body.is_empty()).then_some(body);
        request(method, &self.url(path), &headers, body)
    }

    fn get(&self, path: &str) -> Answer {
        self.admin("GET", path, "", b"")
    }

    fn put_json(&self, path: &str, body: &Value) -> Answer {
        self.admin("PUT", path, "application/json", body.to_string().as_bytes())
    }

    /// The recent refusals, to explain a refused login.
    fn rejected(&self) -> String {
        self.get(&format!("/v1/orgs/{ORG}/logins/rejected?limit=5"))
            .text()
    }
}

/// Fails (never skips) when the IdP cannot run here.
fn require_simplesamlphp() {
    let php = Command::new("php").arg("--version").output();
    assert!(
        php.is_ok_and(|out| out.status.success()),
        "php is missing: {INSTALL_HINT}"
    );
    let ssp = std::env::var("SIMPLESAMLPHP_DIR")
        .unwrap_or_else(|_| "/usr/share/simplesamlphp".to_string());
    assert!(
        Path::new(&ssp).join("www").is_dir(),
        "SimpleSAMLphp is missing ({ssp}): {INSTALL_HINT}"
    );
}

/// SimpleSAMLphp, set up by `tools/simplesamlphp/setup` for jitledger's SP metadata.
struct SimpleSamlPhp {
    _process: Group,
    base: String,
    metadata: String,
    dir: PathBuf,
}

impl SimpleSamlPhp {
    fn start(dir: &Path, profile: &str, sign: &str, sp_metadata: &str) -> SimpleSamlPhp {
        std::fs::create_dir_all(dir).unwrap();
        let sp_file = dir.join("jitledger-sp.xml");
        std::fs::write(&sp_file, sp_metadata).unwrap();
        let stderr_path = dir.join("setup.stderr");
        // The port is free when picked but may be taken before php binds it: try again.
        let mut attempts = 0;
        let (process, address, lines) = loop {
            attempts += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .unwrap()
                .port();
            let mut command = Command::new(SETUP);
            command
                .args(["--profile", profile, "--sign", sign])
                .arg(dir)
                .arg(port.to_string())
                .arg(&sp_file)
                .stderr(File::create(&stderr_path).unwrap());
            match spawn_until_listening(command, "tools/simplesamlphp/setup") {
                Ok(started) => break started,
                Err(error) => {
                    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    if attempts < 3 && stderr.contains("Address already in use") {
                        continue;
                    }
                    panic!("{error}; its stderr:\n{stderr}\n({INSTALL_HINT})")
                }
            }
        };
        let metadata_path = lines
            .iter()
            .find_map(|line| line.strip_prefix("idp metadata: "))
            .expect("setup names the IdP metadata file");
        SimpleSamlPhp {
            _process: process,
            base: format!("http://{address}"),
            metadata: std::fs::read_to_string(metadata_path.trim()).unwrap(),
            dir: dir.to_path_buf(),
        }
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["php.log", "log/simplesamlphp.log"] {
            let log = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            text.push_str(&format!("--- {name}\n{log}\n"));
        }
        text
    }
}

/// What the browser carries back from the IdP: the ACS URL and its form.
struct PostBinding {
    acs: String,
    form: Vec<(String, String)>,
    saml_response_xml: String,
}

impl PostBinding {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One SP-initiated login, as a browser does it: jitledger's login URL → 302 to the IdP's
/// SSO URL → the login form → the auto-submitting form back to the ACS (not yet posted).
fn sp_initiated(live: &Live, username: &str, password: &str, relay_state: &str) -> PostBinding {
    let mut browser = Browser::default();
    let start = live.jitledger.url(&format!(
        "/v1/orgs/{ORG}/idps/{IDP}/login?relay_state={}",
        url_encode(relay_state)
    ));
    let redirect = browser.send("GET", &start, None);
    assert_eq!(redirect.status, 302, "login start: {}", redirect.text());
    let sso = redirect.header("location").expect("Location").to_string();
    assert!(
        sso.starts_with(&format!(
            "{}/saml2/idp/SSOService.php?SAMLRequest=",
            live.idp.base
        )),
        "{sso}"
    );
    through_idp(&mut browser, &live.idp, &sso, username, password)
}

/// One IdP-initiated login: SimpleSAMLphp's IdP-first URL names the SP; the response that
/// comes back answers no request.
fn idp_initiated(live: &Live, username: &str, password: &str, relay_state: &str) -> PostBinding {
    let start = format!(
        "{}/saml2/idp/SSOService.php?spentityid={}&RelayState={}",
        live.idp.base,
        url_encode(SP_ENTITY_ID),
        url_encode(relay_state)
    );
    through_idp(
        &mut Browser::default(),
        &live.idp,
        &start,
        username,
        password,
    )
}

/// From the IdP's SSO URL: its login form, filled in and posted, to the form it answers.
fn through_idp(
    browser: &mut Browser,
    idp: &SimpleSamlPhp,
    sso: &str,
    username: &str,
    password: &str,
) -> PostBinding {
    let (page_url, page) = browser.follow("GET", sso, None);
    let html = page.text();
    let mut login = find_form(&html, "password").unwrap_or_else(|| {
        panic!(
            "no login form at {page_url} ({}):\n{html}\n{}",
            page.status,
            idp.logs()
        )
    });
    assert!(login.field("AuthState").is_some(), "{login:?}");
    login.set("username", username);
    login.set("password", password);
    let action = resolve(&page_url, &login.action);
    let (_, answer) = browser.follow(&login.method, &action, Some(&form_body(&login.fields)));
    let html = answer.text();
    let post = find_form(&html, "SAMLResponse").unwrap_or_else(|| {
        panic!(
            "no SAMLResponse form after logging in as {username} ({}):\n{html}\n{}",
            answer.status,
            idp.logs()
        )
    });
    assert_eq!(post.method, "POST");
    let encoded = post.field("SAMLResponse").unwrap().to_string();
    let xml = base64::engine::general_purpose::STANDARD
        .decode(encoded.split_whitespace().collect::<String>())
        .expect("SAMLResponse is base64");
    PostBinding {
        acs: post.action.clone(),
        saml_response_xml: String::from_utf8(xml).expect("UTF-8 response"),
        form: post.fields,
    }
}

/// jitledger and SimpleSAMLphp, introduced to each other: an org whose SP metadata the
/// IdP was set up from, and the IdP's metadata and `jit` settings loaded into the org.
struct Live {
    jitledger: Jitledger,
    idp: SimpleSamlPhp,
    acs_url: String,
    _scratch: tempfile::TempDir,
}

impl Live {
    /// `profile` and `sign` are `tools/simplesamlphp/setup`'s `--profile` and `--sign`.
    fn start(profile: &str, sign: &str, jit: Value) -> Live {
        require_simplesamlphp();
        let scratch = tempfile::tempdir().unwrap();
        let jitledger = Jitledger::start(&scratch.path().join("data"));

        let acs_url = jitledger.url(&format!("/v1/orgs/{ORG}/saml/acs"));
        let org = json!({"org_id": ORG, "sp_entity_id": SP_ENTITY_ID, "acs_url": acs_url});
        let created = jitledger.admin(
            "POST",
            "/v1/orgs",
            "application/json",
            org.to_string().as_bytes(),
        );
        assert_eq!(created.status, 201, "{}", created.text());
        let sp_metadata = request(
            "GET",
            &jitledger.url(&format!("/v1/orgs/{ORG}/saml/metadata")),
            &[],
            None,
        );
        assert_eq!(sp_metadata.status, 200, "{}", sp_metadata.text());

        let idp = SimpleSamlPhp::start(
            &scratch.path().join("simplesamlphp"),
            profile,
            sign,
            &sp_metadata.text(),
        );
        let loaded = jitledger.admin(
            "PUT",
            &format!("/v1/orgs/{ORG}/idps/{IDP}"),
            "application/xml",
            idp.metadata.as_bytes(),
        );
        assert!(
            matches!(loaded.status, 200 | 201),
            "IdP metadata refused: {}\n{}",
            loaded.text(),
            idp.metadata
        );
        let loaded = loaded.json();
        assert_eq!(
            loaded["entity_id"],
            format!("{}/saml2/idp/metadata.php", idp.base)
        );
        assert!(
            loaded["sso_services"].as_array().unwrap().iter().any(|s| {
                s["location"] == format!("{}/saml2/idp/SSOService.php", idp.base).as_str()
            }),
            "{loaded}"
        );
        let jit = jitledger.put_json(&format!("/v1/orgs/{ORG}/idps/{IDP}/jit"), &jit);
        assert_eq!(jit.status, 200, "{}", jit.text());
        Live {
            jitledger,
            idp,
            acs_url,
            _scratch: scratch,
        }
    }

    /// Posts the IdP's form to the ACS as the browser's auto-submit does; asserts that
    /// jitledger accepted it, and explains a refusal with the response's XML.
    fn accept(&self, binding: &PostBinding) -> Value {
        assert_eq!(
            binding.acs, self.acs_url,
            "the IdP posts to jitledger's ACS"
        );
        let answer = self.post(binding);
        assert_eq!(
            answer.status,
            200,
            "jitledger refused SimpleSAMLphp's response: {}\nrecent refusals: {}\n\
             response XML:\n{}",
            answer.text(),
            self.jitledger.rejected(),
            binding.saml_response_xml
        );
        answer.json()
    }

    fn post(&self, binding: &PostBinding) -> Answer {
        request(
            "POST",
            &binding.acs,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(form_body(&binding.form).as_bytes()),
        )
    }

    fn user(&self, user_id: &str) -> Value {
        let answer = self
            .jitledger
            .get(&format!("/v1/orgs/{ORG}/users/{}", url_encode(user_id)));
        assert_eq!(answer.status, 200, "{user_id}: {}", answer.text());
        answer.json()
    }
}

/// The attribute names SimpleSAMLphp's test users have, for the `basic` profile.
fn basic_jit() -> Value {
    json!({
        "enabled": true,
        "idp_managed_roles": true,
        "attribute_mapping": {
            "USER_EMAIL": "email",
            "USER_FIRST_NAME": "givenName",
            "USER_LAST_NAME": "sn",
            "USER_DISPLAY_NAME": "displayName",
            "USER_ROLE": "role",
        },
    })
}

#[test]
fn simplesamlphp_sp_initiated_login_provisions_the_user_once() {
    let began = Instant::now();
    let live = Live::start("basic", "both", basic_jit());

    let alice = sp_initiated(&live, "alice", "alicepass", "/after/login?x=1");
    assert_eq!(
        alice.field("RelayState"),
        Some("/after/login?x=1"),
        "RelayState comes back unchanged"
    );
    let accepted = live.accept(&alice);
    assert_eq!(accepted["outcome"], "provisioned", "{accepted}");
    // The emailAddress NameID "Alice@Example.com" names the user, lower-cased.
    assert_eq!(accepted["user_id"], "alice@example.com", "{accepted}");

    let user = live.user("alice@example.com");
    assert_eq!(user["idp_id"], IDP, "{user}");
    // The IdP sent "Alice@Example.com"; jitledger keeps emails lower-cased.
    assert_eq!(user["email"], "alice@example.com", "{user}");
    assert_eq!(user["first_name"], "Alice", "{user}");
    assert_eq!(user["last_name"], "Liddell", "{user}");
    assert_eq!(user["display_name"], "Alice Liddell", "{user}");
    assert_eq!(user["role"], "Developer", "{user}");
    assert_eq!(user["sso"], true, "{user}");
    assert_eq!(
        user["acl"],
        json!([{"role_id": "Developer", "on": "account-7", "on_type": "ACCOUNT"}]),
        "{user}"
    );

    // The same SAMLResponse again: its InResponseTo names a request that was answered once
    // already, so it is a replay; nothing is written, and the refusal is on record.
    let replayed = live.post(&alice);
    let code = replayed.json()["error"]["code"].clone();
    assert_eq!(
        (replayed.status, code.as_str()),
        (409, Some("replayed_assertion")),
        "the replayed response was not refused as a replay: {}",
        replayed.text()
    );
    assert!(live.jitledger.rejected().contains(code.as_str().unwrap()));
    assert_eq!(live.user("alice@example.com")["version"], user["version"]);

    // Bob, in a fresh browser: his IdP role "admin" names the built-in Admin role, and an
    // attribute the IdP does not send leaves the field empty.
    let bob = sp_initiated(&live, "bob", "bobpass", "bob");
    assert_eq!(live.accept(&bob)["outcome"], "provisioned");
    let bob = live.user("bob@example.com");
    assert_eq!(bob["role"], "Admin", "{bob}");
    assert_eq!(bob["first_name"], "Bob", "{bob}");
    assert_eq!(bob["display_name"], Value::Null, "{bob}");

    // Carol's names are escaped in the XML (&amp; &lt; &gt;), and one is outside the BMP.
    let carol = sp_initiated(&live, "carol", "carolpass", "carol");
    assert!(
        carol
            .saml_response_xml
            .contains("O'Brien &amp; Sons &lt;Ltd&gt; ]]&gt; x"),
        "{}",
        carol.saml_response_xml
    );
    live.accept(&carol);
    let carol = live.user("carol@example.com");
    assert_eq!(
        carol["first_name"], "Zo\u{eb} \u{1F600} \"Q\" 'a'",
        "{carol}"
    );
    assert_eq!(carol["last_name"], "O'Brien & Sons <Ltd> ]]> x", "{carol}");
    assert_eq!(carol["display_name"], "Zo\u{eb} & <b> ]]> \"q\"", "{carol}");
    assert_eq!(carol["role"], "Agent", "{carol}");

    eprintln!("SP-initiated live login test took {:?}", began.elapsed());
}

#[test]
fn simplesamlphp_idp_initiated_login_is_accepted_once() {
    let live = Live::start("basic", "both", basic_jit());

    let alice = idp_initiated(&live, "alice", "alicepass", "from-the-idp");
    assert!(
        !alice.saml_response_xml.contains("InResponseTo="),
        "an IdP-initiated response answers no request:\n{}",
        alice.saml_response_xml
    );
    assert_eq!(alice.field("RelayState"), Some("from-the-idp"));
    let accepted = live.accept(&alice);
    assert_eq!(accepted["outcome"], "provisioned", "{accepted}");
    let version = live.user("alice@example.com")["version"].clone();

    // Without InResponseTo only the assertion ID can tell a replay: it must.
    let replayed = live.post(&alice);
    assert_eq!(replayed.status, 409, "{}", replayed.text());
    assert_eq!(replayed.json()["error"]["code"], "replayed_assertion");
    assert_eq!(live.user("alice@example.com")["version"], version);

    // A fresh IdP-initiated login is a new assertion: accepted, nothing changed.
    let again = idp_initiated(&live, "alice", "alicepass", "again");
    assert_eq!(live.accept(&again)["outcome"], "unchanged");
}

#[test]
fn simplesamlphp_oid_attributes_and_transient_name_id() {
    // Shibboleth-style: attributes by OID with the uri NameFormat (jitledger's `shibboleth`
    // preset), the role from a plainly named attribute, and a transient NameID, so users
    // are named by eduPersonPrincipalName.
    let live = Live::start(
        "oid",
        "both",
        json!({
            "enabled": true,
            "idp_managed_roles": true,
            "preset": "shibboleth",
            "attribute_mapping": {"USER_ROLE": "role"},
            "user_id_attribute": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
        }),
    );

    let alice = sp_initiated(&live, "alice", "alicepass", "oid");
    let xml = &alice.saml_response_xml;
    assert!(
        xml.contains("urn:oasis:names:tc:SAML:2.0:nameid-format:transient")
            && xml.contains(r#"Name="urn:oid:2.5.4.42""#)
            && xml.contains("urn:oasis:names:tc:SAML:2.0:attrname-format:uri"),
        "the oid profile's response:\n{xml}"
    );
    let accepted = live.accept(&alice);
    assert_eq!(accepted["user_id"], "alice@example.org", "{accepted}");
    let user = live.user("alice@example.org");
    assert_eq!(user["email"], "alice@example.com", "{user}");
    assert_eq!(user["first_name"], "Alice", "{user}");
    assert_eq!(user["last_name"], "Liddell", "{user}");
    assert_eq!(user["display_name"], "Alice Liddell", "{user}");
    assert_eq!(user["role"], "Developer", "{user}");

    // The next login carries a new transient NameID; the attribute still names Alice.
    let again = sp_initiated(&live, "alice", "alicepass", "oid");
    assert_eq!(live.accept(&again)["user_id"], "alice@example.org");
}

#[test]
fn simplesamlphp_signing_only_the_assertion_or_only_the_response() {
    for sign in ["assertion", "response"] {
        let live = Live::start("basic", sign, basic_jit());
        let alice = sp_initiated(&live, "alice", "alicepass", sign);
        let xml = &alice.saml_response_xml;
        assert_eq!(xml.matches("<ds:Signature ").count(), 1, "{sign}:\n{xml}");
        let signature = xml.find("<ds:Signature ").unwrap();
        let assertion = xml.find("<saml:Assertion").expect("a plain Assertion");
        assert_eq!(
            signature > assertion,
            sign == "assertion",
            "where the {sign} signature is:\n{xml}"
        );
        let accepted = live.accept(&alice);
        assert_eq!(accepted["outcome"], "provisioned", "{sign}: {accepted}");
        assert_eq!(live.user("alice@example.com")["role"], "Developer");
    }
}
