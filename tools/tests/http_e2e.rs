//! End to end over a real socket: the real router served on 127.0.0.1:0 with a temp sled
//! directory, logins signed by the test IdP (whose output xmlsec1 verifies in its own
//! tests), and every answer read back through HTTP.

use jitledger_tools::client::url_encode;
use std::io::Read as _;
use std::sync::Arc;

use base64::Engine as _;
use jitledger::cli::client::send;
use jitledger::http::AppState;
use jitledger::service::{Service, system_clock, tokens};
use jitledger::store::{Store, StoreConfig};
use jitledger_tools::idp::{
    Attribute, ResponseSpec, Sign, fixture_key, metadata_xml, post_binding_value, random_id,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

const ADMIN: &str = "jlt._.bootstrap.0123456789abcdef0123456789abcdef0123456789abcdef";
const IDP: &str = "https://idp.example.com/metadata";
const SP: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";

struct Server {
    address: String,
    service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&StoreConfig::new(dir.path())).unwrap());
        let service = Arc::new(Service::new(store, system_clock(), tokens::hash(ADMIN)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(Arc::clone(&service));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                jitledger::http::serve(listener, state, shutdown)
                    .await
                    .unwrap();
            });
        });
        Server {
            address,
            service,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let payload = text.as_deref().map(|t| ("application/json", t.as_bytes()));
        let answer = send(method, &self.url(path), token, payload).unwrap();
        let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        (answer.status, value)
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let answer = send(method, &self.url(path), token, Some((content_type, body))).unwrap();
        (
            answer.status,
            serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
        )
    }

    /// Posts a signed response to the ACS as the browser's form would.
    fn post_login(&self, org: &str, xml: &str) -> (u16, Value) {
        let form = format!("SAMLResponse={}", url_encode(&post_binding_value(xml)));
        self.raw(
            "POST",
            &format!("/v1/orgs/{org}/saml/acs"),
            None,
            "application/x-www-form-urlencoded",
            form.as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An org with the test IdP registered and JIT on with IdP-managed roles.
fn set_up(server: &Server, org: &str, idp_entity: &str) -> Value {
    let (status, _) = server.call(
        "POST",
        "/v1/orgs",
        Some(ADMIN),
        Some(json!({ "org_id": org, "sp_entity_id": SP, "acs_url": ACS })),
    );
    assert_eq!(status, 201);
    let signer = fixture_key("rsa2048").unwrap();
    let metadata = metadata_xml(
        idp_entity,
        "https://idp.example.com/sso",
        signer.certificate_pem(),
    );
    let (status, idp) = server.raw(
        "PUT",
        &format!("/v1/orgs/{org}/idps/okta"),
        Some(ADMIN),
        "application/xml",
        metadata.as_bytes(),
    );
    assert_eq!(status, 201, "{idp}");
    let (status, jit) = server.call(
        "PUT",
        &format!("/v1/orgs/{org}/idps/okta/jit"),
        Some(ADMIN),
        Some(json!({ "enabled": true, "idp_managed_roles": true })),
    );
    assert_eq!(status, 200, "{jit}");
    idp
}

fn login_xml(name_id: &str, attributes: &[(&str, &[&str])], sign: Sign) -> String {
    let mut spec = ResponseSpec::new(IDP, SP, ACS, name_id, OffsetDateTime::now_utc())
        .ids(&random_id().unwrap(), &random_id().unwrap())
        .sign(sign);
    for (name, values) in attributes {
        spec = spec.attribute(Attribute::new(name, values.iter().copied()));
    }
    spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap()
}

const ALICE: &[(&str, &[&str])] = &[
    ("emailAddress", &["alice@example.com"]),
    ("firstName", &["Alice"]),
    ("lastName", &["Liddell"]),
    ("role", &["Developer"]),
    ("acl[0].roleId", &["Admin"]),
    ("acl[0].on", &["acct-1"]),
    ("acl[0].onType", &["account"]),
];

#[test]
fn airkit_and_yext_behaviours_through_the_acs_and_the_query_routes() {
    let server = Server::start();
    let idp = set_up(&server, "acme", IDP);
    assert_eq!(idp["entity_id"], IDP);
    assert_eq!(idp["signing_certificates"].as_array().unwrap().len(), 1);
    let (status, token) = server.call(
        "POST",
        "/v1/orgs/acme/tokens",
        Some(ADMIN),
        Some(json!({"scope": "read"})),
    );
    assert_eq!(status, 201);
    let read = token["token"].as_str().unwrap().to_string();

    // First login provisions (Yext: enough attributes), with role and ACL from the IdP.
    let first = login_xml("alice@example.com", ALICE, Sign::Assertion);
    let (status, answer) = server.post_login("acme", &first);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "provisioned");
    let kinds: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["UserProvisioned", "LoginRecorded"]);
    assert_eq!(answer["user"]["role"], "Developer");
    assert_eq!(answer["user"]["sso"], true);
    let seq_before_change = answer["events"][1]["seq"].as_u64().unwrap();

    // The same assertion again is a replay, refused, nothing written.
    let (status, refused) = server.post_login("acme", &first);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("replayed_assertion"))
    );

    // Query with a read token.
    let (status, user) = server.call(
        "GET",
        "/v1/orgs/acme/users/alice%40example.com",
        Some(&read),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["phone_number"], Value::Null);
    assert_eq!(
        user["acl"],
        json!([{"role_id": "Admin", "on": "acct-1", "on_type": "ACCOUNT"}])
    );
    assert_eq!(user["provenance"]["role"]["source"]["attribute"], "role");
    assert_eq!(answer["user"], user, "the login answers the user as stored");

    // Airkit: a role changed in the IdP reaches the account at the next login.
    let promoted = login_xml("alice@example.com", &[("role", &["admin"])], Sign::Response);
    let (status, answer) = server.post_login("acme", &promoted);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "updated");
    assert_eq!(answer["user"]["role"], "Admin");
    assert_eq!(
        answer["user"]["last_name"], "Liddell",
        "absent attributes leave values alone"
    );
    let (_, stored) = server.call(
        "GET",
        "/v1/orgs/acme/users/alice%40example.com",
        Some(&read),
        None,
    );
    assert_eq!(
        answer["user"], stored,
        "the login answers the user as stored"
    );

    // As of a seq before the change, and the history.
    let path = format!("/v1/orgs/acme/users/alice%40example.com?as_of_seq={seq_before_change}");
    let (_, then) = server.call("GET", &path, Some(&read), None);
    assert_eq!(then["role"], "Developer");
    let (_, history) = server.call(
        "GET",
        "/v1/orgs/acme/users/alice%40example.com/history",
        Some(&read),
        None,
    );
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "UserProvisioned",
            "LoginRecorded",
            "RoleChanged",
            "LoginRecorded"
        ]
    );

    // By role and by ACL resource.
    let (_, admins) = server.call("GET", "/v1/orgs/acme/users?role=Admin", Some(&read), None);
    assert_eq!(admins["users"].as_array().unwrap().len(), 1);
    let (_, grants) = server.call(
        "GET",
        "/v1/orgs/acme/acl?on=acct-1&on_type=ACCOUNT",
        Some(&read),
        None,
    );
    assert_eq!(
        grants["grants"],
        json!([{"user_id": "alice@example.com", "role_id": "Admin"}])
    );

    // Yext: an incomplete ACL entry is refused, naming n and the field; nothing written.
    let incomplete = login_xml(
        "bob@example.com",
        &[
            ("emailAddress", &["bob@example.com"]),
            ("firstName", &["Bob"]),
            ("lastName", &["B"]),
            ("acl[2].roleId", &["Agent"]),
            ("acl[2].onType", &["FOLDER"]),
        ],
        Sign::Assertion,
    );
    let (status, refused) = server.post_login("acme", &incomplete);
    assert_eq!(status, 422);
    assert_eq!(refused["error"]["code"], "incomplete_acl_entry");
    assert_eq!(
        refused["error"]["detail"],
        json!({"index": 2, "missing": "on"})
    );
    let request_id = refused["error"]["request_id"].as_str().unwrap().to_string();
    let (_, rejected) = server.call("GET", "/v1/orgs/acme/logins/rejected", Some(&read), None);
    let last = &rejected["rejected"][0];
    assert_eq!(last["code"], "incomplete_acl_entry");
    assert_eq!(last["request_id"], request_id.as_str());
    assert_eq!(last["name_id"], "bob@example.com");

    // Yext: unknown user without enough attributes.
    let thin = login_xml(
        "carol@example.com",
        &[("firstName", &["Carol"])],
        Sign::Assertion,
    );
    let (status, refused) = server.post_login("acme", &thin);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("insufficient_attributes"))
    );

    // A forged signature is refused and nothing is written.
    let head = server.service.store().head().unwrap();
    let forged =
        login_xml("mallory@example.com", ALICE, Sign::Assertion).replace("Alice", "Mallory");
    let (status, refused) = server.post_login("acme", &forged);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("digest_mismatch"))
    );
    assert_eq!(server.service.store().head().unwrap(), head);

    // The JSON login webhook takes the same response.
    let bob = login_xml(
        "bob@example.com",
        &[
            ("emailAddress", &["bob@example.com"]),
            ("firstName", &["Bob"]),
            ("lastName", &["B"]),
        ],
        Sign::Both,
    );
    let body = json!({ "saml_response": post_binding_value(&bob) });
    let (status, answer) = server.call("POST", "/v1/orgs/acme/logins", None, Some(body));
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("provisioned"))
    );

    server.service.store().verify().unwrap();
    let (_, metrics) = (
        200,
        send("GET", &server.url("/metrics"), None, None).unwrap(),
    );
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert!(
        metrics.contains("jitledger_logins_total{outcome=\"provisioned\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("jitledger_login_refusals_total{code=\"replayed_assertion\"} 1"));
    assert!(
        metrics.contains("jitledger_append_batches_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitledger_append_queue_depth 0"),
        "{metrics}"
    );
}

#[test]
fn tenants_are_isolated() {
    let server = Server::start();
    set_up(&server, "alpha", IDP);
    set_up(&server, "beta", "https://other-idp.example.com/metadata");
    let (_, token) = server.call(
        "POST",
        "/v1/orgs/alpha/tokens",
        Some(ADMIN),
        Some(json!({"scope": "admin"})),
    );
    let alpha = token["token"].as_str().unwrap().to_string();
    for path in [
        "/v1/orgs/beta/users",
        "/v1/orgs/beta/users/x",
        "/v1/orgs/beta/logins/rejected",
        "/v1/orgs/nowhere/users",
    ] {
        let (status, body) = server.call("GET", path, Some(&alpha), None);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (status, _) = server.call(
        "POST",
        "/v1/orgs/beta/tokens",
        Some(&alpha),
        Some(json!({"scope": "read"})),
    );
    assert_eq!(status, 403);
    let (status, _) = server.call("GET", "/v1/events", Some(&alpha), None);
    assert_eq!(
        status, 403,
        "the global log is for the bootstrap token only"
    );
    // A login signed by alpha's IdP posted to beta.
    let (status, refused) = server.post_login(
        "beta",
        &login_xml("alice@example.com", ALICE, Sign::Assertion),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("unknown_idp"))
    );
    // No token, a bad token.
    assert_eq!(
        server.call("GET", "/v1/orgs/alpha/users", None, None).0,
        401
    );
    assert_eq!(
        server
            .call(
                "GET",
                "/v1/orgs/alpha/users",
                Some("jlt.alpha.x.0123456789abcdef0123456789abcdef"),
                None
            )
            .0,
        401
    );
}

#[test]
fn sp_initiated_login_answers_once() {
    let server = Server::start();
    set_up(&server, "acme", IDP);
    // The request ID travels in the deflated SAMLRequest of the Location header.
    let location = {
        let raw = std::net::TcpStream::connect(&server.address).and_then(|mut stream| {
            use std::io::Write as _;
            let request = format!(
                "GET /v1/orgs/acme/idps/okta/login?relay_state=%2Fhome HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.address
            );
            stream.write_all(request.as_bytes())?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        });
        let raw = raw.unwrap();
        assert!(raw.starts_with("HTTP/1.1 302"), "{raw}");
        raw.lines()
            .find_map(|l| l.strip_prefix("location: ").map(str::to_string))
            .unwrap()
    };
    assert!(location.starts_with("https://idp.example.com/sso?SAMLRequest="));
    assert!(location.ends_with("&RelayState=%2Fhome"), "{location}");
    let encoded = location
        .split("SAMLRequest=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let decoded = percent_decode(encoded);
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(decoded)
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let id = xml
        .split("ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let answered = |assertion: &str| {
        let spec = ResponseSpec::new(IDP, SP, ACS, "alice@example.com", OffsetDateTime::now_utc())
            .ids(&random_id().unwrap(), assertion)
            .in_response_to(&id)
            .attribute(Attribute::new("emailAddress", ["alice@example.com"]))
            .attribute(Attribute::new("firstName", ["Alice"]))
            .attribute(Attribute::new("lastName", ["Liddell"]));
        spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap()
    };
    let first = answered("_first-answer");
    let (status, answer) = server.post_login("acme", &first);
    assert_eq!(status, 200, "{answer}");
    // The same response again, or a second one naming the answered request (a fresh
    // assertion), is a replay.
    for replay in [first, answered("_second-answer")] {
        let (status, refused) = server.post_login("acme", &replay);
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (409, Some("replayed_assertion")),
            "{refused}"
        );
    }
    // A request this SP never sent is still a mismatch.
    let spec = ResponseSpec::new(IDP, SP, ACS, "alice@example.com", OffsetDateTime::now_utc())
        .ids(&random_id().unwrap(), "_unknown-request")
        .in_response_to("_never-sent")
        .attribute(Attribute::new("emailAddress", ["alice@example.com"]));
    let unknown = spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap();
    let (status, refused) = server.post_login("acme", &unknown);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("in_response_to_mismatch"))
    );
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn limits_and_malformed_input_get_clear_codes() {
    let server = Server::start();
    set_up(&server, "acme", IDP);
    let huge = vec![b'A'; jitledger::http::SAML_BODY_BYTES_MAX + 1];
    let (status, body) = server.raw(
        "POST",
        "/v1/orgs/acme/logins",
        None,
        "application/x-www-form-urlencoded",
        &huge,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (status, body) = server.raw(
        "POST",
        "/v1/orgs/acme/logins",
        None,
        "application/x-www-form-urlencoded",
        b"SAMLResponse=%%%",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.raw(
        "POST",
        "/v1/orgs/acme/logins",
        None,
        "application/x-www-form-urlencoded",
        b"SAMLResponse=bm90IHhtbA%3D%3D",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("malformed_xml"))
    );
    // A valid response given twice in one form: refused before validation, not consumed.
    let login = url_encode(&post_binding_value(&login_xml(
        "alice@example.com",
        ALICE,
        Sign::Assertion,
    )));
    let (status, body) = server.raw(
        "POST",
        "/v1/orgs/acme/saml/acs",
        None,
        "application/x-www-form-urlencoded",
        format!("SAMLResponse={login}&RelayState=x&SAMLResponse={login}").as_bytes(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("malformed_request")),
        "{body}"
    );
    let (status, body) = server.raw(
        "POST",
        "/v1/orgs/acme/saml/acs",
        None,
        "application/x-www-form-urlencoded",
        format!("RelayState=x&SAMLResponse={login}").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call("GET", "/v1/orgs/nope/saml/metadata", None, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_org"))
    );
    let (status, body) = server.call(
        "PUT",
        "/v1/orgs/acme/idps/x",
        Some(ADMIN),
        Some(json!({"not": "xml"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_metadata"))
    );
    let (status, _) = server.call("GET", "/no/such/route", None, None);
    assert_eq!(status, 404);
}

#[test]
fn every_documented_route_is_served() {
    let server = Server::start();
    set_up(&server, "acme", IDP);
    let (status, document) = server.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let served: std::collections::BTreeSet<(String, String)> = jitledger::http::served_routes()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_ascii_lowercase(), path.to_string()))
        .collect();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(served, documented, "the router and /openapi.json differ");
    for (method, path) in &documented {
        let concrete = path
            .replace("{org}", "acme")
            .replace("{idp}", "okta")
            .replace("{role}", "r")
            .replace("{token_id}", "t")
            .replace("{user}", "u");
        let answer = send(
            &method.to_uppercase(),
            &server.url(&concrete),
            Some(ADMIN),
            Some(("application/json", b"{}")),
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        assert!(
            !(answer.status == 404 && body["error"]["message"] == "no such route"),
            "{method} {path} is not routed"
        );
        assert_ne!(answer.status, 405, "{method} {path}");
        let documented_statuses = paths[path.as_str()][method.as_str()]["responses"]
            .as_object()
            .unwrap();
        assert!(
            documented_statuses.contains_key(&answer.status.to_string()),
            "{method} {path} answered {} which it does not document",
            answer.status
        );
        // A path parameter that is not UTF-8 once decoded: refused, and documented.
        if path.contains('{') {
            let undecodable = format!("{}%FF", concrete.trim_end_matches('/'));
            let undecodable = if path.ends_with('}') {
                undecodable
            } else {
                concrete.replacen("/acme/", "/%FF/", 1)
            };
            let answer = send(
                &method.to_uppercase(),
                &server.url(&undecodable),
                Some(ADMIN),
                Some(("application/json", b"{}")),
            )
            .unwrap();
            let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            assert_eq!(
                (answer.status, body["error"]["code"].as_str()),
                (400, Some("malformed_request")),
                "{method} {undecodable}"
            );
            assert!(documented_statuses.contains_key("400"), "{method} {path}");
        }
    }
}

/// Replaces what changes from run to run (IDs, instants, hashes) so bodies can be golden.
fn redact(value: &Value) -> Value {
    const VOLATILE: [&str; 16] = [
        "login_id",
        "request_id",
        "created_at",
        "updated_at",
        "last_login_at",
        "recorded_at",
        "at",
        "hash",
        "prev_hash",
        "cause",
        "not_after",
        "token",
        "token_id",
        "token_sha256",
        "authn_instant",
        "session_index",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    let v = if VOLATILE.contains(&key.as_str()) {
                        json!("[redacted]")
                    } else {
                        redact(v)
                    };
                    (key.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(text) if text.starts_with("login_") => json!("[redacted]"),
        other => other.clone(),
    }
}

macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, serde_json::to_string_pretty(&redact(&$value)).unwrap());
        });
    };
}

#[test]
fn the_replay_guard_of_an_expired_assertion_is_forgotten() {
    let server = Server::start();
    set_up(&server, "acme", IDP);
    let skew = server
        .service
        .store()
        .org("acme")
        .unwrap()
        .map(|org| org.clock_skew_seconds)
        .unwrap();
    // Issued so long ago that its guard (NotOnOrAfter plus the skew) ends two seconds from
    // now: accepted now, expired soon.
    let issued = OffsetDateTime::now_utc() - time::Duration::seconds(skew + 60);
    let mut spec = ResponseSpec::new(IDP, SP, ACS, "alice@example.com", issued)
        .ids(&random_id().unwrap(), &random_id().unwrap())
        .valid_for(time::Duration::seconds(62));
    for (name, values) in ALICE {
        spec = spec.attribute(Attribute::new(name, values.iter().copied()));
    }
    let xml = spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap();
    let (status, answer) = server.post_login("acme", &xml);
    assert_eq!(status, 200, "{answer}");
    let forget = || server.service.prune_expired_assertions(None).unwrap();
    assert_eq!(forget().forgotten, 0);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(forget().forgotten, 1);
}

#[test]
fn golden_answers_of_the_main_routes_and_refusals() {
    let server = Server::start();
    let idp = set_up(&server, "acme", IDP);
    golden!("api_put_idp", idp);
    let fixed = |assertion: &str, attributes: &[(&str, &[&str])]| {
        let mut spec =
            ResponseSpec::new(IDP, SP, ACS, "alice@example.com", OffsetDateTime::now_utc())
                .ids(&format!("{assertion}-response"), assertion);
        for (name, values) in attributes {
            spec = spec.attribute(Attribute::new(name, values.iter().copied()));
        }
        spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap()
    };
    let (_, provisioned) = server.post_login("acme", &fixed("_golden-1", ALICE));
    golden!("api_login_provisioned", provisioned);
    let (_, user) = server.call(
        "GET",
        "/v1/orgs/acme/users/alice%40example.com",
        Some(ADMIN),
        None,
    );
    golden!("api_user", user);
    let (_, history) = server.call(
        "GET",
        "/v1/orgs/acme/users/alice%40example.com/history",
        Some(ADMIN),
        None,
    );
    golden!("api_history", history);
    let (_, replayed) = server.post_login("acme", &fixed("_golden-1", ALICE));
    golden!("api_refusal_replayed_assertion", replayed);
    let thin = ResponseSpec::new(IDP, SP, ACS, "carol@example.com", OffsetDateTime::now_utc())
        .ids("_golden-2-response", "_golden-2")
        .attribute(Attribute::new("firstName", ["Carol"]))
        .signed_xml(&fixture_key("rsa2048").unwrap())
        .unwrap();
    let (_, insufficient) = server.post_login("acme", &thin);
    golden!("api_refusal_insufficient_attributes", insufficient);
    let (_, unauthorized) = server.call("GET", "/v1/orgs/acme/users", None, None);
    golden!("api_refusal_unauthorized", unauthorized);
    let (_, unknown) = server.call("GET", "/v1/orgs/nope/saml/metadata", None, None);
    golden!("api_refusal_unknown_org", unknown);
}

/// A golden answer: its status and its body (JSON, or the text when it is not JSON).
fn answer(status: u16, body: Value) -> Value {
    json!({ "status": status, "body": body })
}

#[test]
fn golden_answers_of_every_route_and_its_main_refusals() {
    let server = Server::start();
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let (status, body) = server.call(method, path, token, body);
        answer(status, body)
    };
    let text = |path: &str| {
        let reply = send("GET", &server.url(path), None, None).unwrap();
        answer(reply.status, json!(String::from_utf8(reply.body).unwrap()))
    };

    // Service routes.
    golden!("api_healthz", call("GET", "/healthz", None, None));

    // Admin: organisations.
    let org = json!({ "org_id": "acme", "sp_entity_id": SP, "acs_url": ACS });
    golden!(
        "api_create_org",
        call("POST", "/v1/orgs", Some(ADMIN), Some(org.clone()))
    );
    golden!(
        "api_create_org_refusal_conflict",
        call("POST", "/v1/orgs", Some(ADMIN), Some(org))
    );
    golden!(
        "api_create_org_refusal_malformed",
        call(
            "POST",
            "/v1/orgs",
            Some(ADMIN),
            Some(json!({"org_id": "acme"}))
        )
    );
    golden!(
        "api_create_org_refusal_unauthorized",
        call("POST", "/v1/orgs", None, Some(json!({})))
    );

    // Admin: IdP metadata.
    let signer = fixture_key("rsa2048").unwrap();
    let metadata = metadata_xml(IDP, "https://idp.example.com/sso", signer.certificate_pem());
    let (status, replaced) = server.raw(
        "PUT",
        "/v1/orgs/acme/idps/okta",
        Some(ADMIN),
        "application/xml",
        metadata.as_bytes(),
    );
    assert_eq!(status, 201);
    let (status, replaced_again) = server.raw(
        "PUT",
        "/v1/orgs/acme/idps/okta",
        Some(ADMIN),
        "application/xml",
        metadata.as_bytes(),
    );
    assert_eq!(replaced, replaced_again);
    golden!("api_put_idp_replaced", answer(status, replaced_again));
    let no_sso = metadata.replace("SingleSignOnService", "ArtifactResolutionService");
    let (status, refused) = server.raw(
        "PUT",
        "/v1/orgs/acme/idps/broken",
        Some(ADMIN),
        "application/xml",
        no_sso.as_bytes(),
    );
    golden!(
        "api_put_idp_refusal_invalid_metadata",
        answer(status, refused)
    );
    let (status, refused) = server.raw(
        "PUT",
        "/v1/orgs/nope/idps/okta",
        Some(ADMIN),
        "application/xml",
        metadata.as_bytes(),
    );
    golden!("api_put_idp_refusal_unknown_org", answer(status, refused));

    // Admin: JIT settings and roles.
    let jit = json!({ "enabled": true, "idp_managed_roles": true });
    golden!(
        "api_put_jit",
        call(
            "PUT",
            "/v1/orgs/acme/idps/okta/jit",
            Some(ADMIN),
            Some(jit.clone())
        )
    );
    golden!(
        "api_put_jit_refusal_unknown_idp",
        call("PUT", "/v1/orgs/acme/idps/nope/jit", Some(ADMIN), Some(jit))
    );
    golden!(
        "api_put_jit_refusal_invalid_settings",
        call(
            "PUT",
            "/v1/orgs/acme/idps/okta/jit",
            Some(ADMIN),
            Some(json!({ "attribute_mapping": { "USER_SHOE_SIZE": "shoe" } }))
        )
    );
    golden!(
        "api_put_role",
        call(
            "PUT",
            "/v1/orgs/acme/roles/auditor",
            Some(ADMIN),
            Some(json!({"name": "Auditor"}))
        )
    );
    golden!(
        "api_put_role_refusal_built_in",
        call(
            "PUT",
            "/v1/orgs/acme/roles/admin",
            Some(ADMIN),
            Some(json!({"name": "Admin"}))
        )
    );

    // Admin: tokens.
    let (status, read) = server.call(
        "POST",
        "/v1/orgs/acme/tokens",
        Some(ADMIN),
        Some(json!({"scope": "read"})),
    );
    let read_token = read["token"].as_str().unwrap().to_string();
    let read_id = read["token_id"].as_str().unwrap().to_string();
    golden!("api_issue_token", answer(status, read.clone()));
    golden!(
        "api_issue_token_refusal_malformed",
        call(
            "POST",
            "/v1/orgs/acme/tokens",
            Some(ADMIN),
            Some(json!({"scope": "root"}))
        )
    );
    golden!(
        "api_issue_token_refusal_forbidden",
        call(
            "POST",
            "/v1/orgs/acme/tokens",
            Some(&read_token),
            Some(json!({"scope": "admin"}))
        )
    );

    // SAML: metadata, SP-initiated start, ACS, webhook, preview.
    golden!("api_sp_metadata", text("/v1/orgs/acme/saml/metadata"));
    golden!(
        "api_start_login_refusal_unknown_idp",
        call("GET", "/v1/orgs/acme/idps/nope/login", None, None)
    );
    let fixed = |assertion: &str, name_id: &str, attributes: &[(&str, &[&str])]| {
        let mut spec = ResponseSpec::new(IDP, SP, ACS, name_id, OffsetDateTime::now_utc())
            .ids(&format!("{assertion}-response"), assertion);
        for (name, values) in attributes {
            spec = spec.attribute(Attribute::new(name, values.iter().copied()));
        }
        spec.signed_xml(&fixture_key("rsa2048").unwrap()).unwrap()
    };
    let alice = fixed("_every-1", "alice@example.com", ALICE);
    let preview = json!({ "saml_response": post_binding_value(&alice) });
    golden!(
        "api_preview",
        call(
            "POST",
            "/v1/orgs/acme/logins/preview",
            Some(ADMIN),
            Some(preview.clone())
        )
    );
    golden!(
        "api_preview_refusal_forbidden",
        call(
            "POST",
            "/v1/orgs/acme/logins/preview",
            Some(&read_token),
            Some(preview)
        )
    );
    // The preview wrote nothing: the same response then provisions.
    let (status, login) = server.post_login("acme", &alice);
    golden!("api_acs_after_preview", answer(status, login));
    let bob = fixed(
        "_every-2",
        "bob@example.com",
        &[
            ("emailAddress", &["bob@example.com"]),
            ("firstName", &["Bob"]),
            ("lastName", &["Builder"]),
        ],
    );
    let webhook = call(
        "POST",
        "/v1/orgs/acme/logins",
        None,
        Some(json!({ "saml_response": post_binding_value(&bob) })),
    );
    let bob_provisioned_seq = webhook["body"]["events"][0]["seq"].as_u64().unwrap();
    golden!("api_login_webhook_json", webhook);
    golden!(
        "api_login_refusal_malformed",
        call(
            "POST",
            "/v1/orgs/acme/logins",
            None,
            Some(json!({ "saml_response": 3 }))
        )
    );
    let forged = fixed("_every-3", "mallory@example.com", ALICE).replace("Alice", "Mallory");
    let (status, refused) = server.post_login("acme", &forged);
    golden!("api_login_refusal_digest_mismatch", answer(status, refused));
    let (status, refused) = server.raw(
        "POST",
        "/v1/orgs/acme/logins",
        None,
        "application/x-www-form-urlencoded",
        &vec![b'A'; jitledger::http::SAML_BODY_BYTES_MAX + 1],
    );
    golden!("api_login_refusal_too_large", answer(status, refused));
    let (status, refused) = server.post_login("nope", &bob);
    golden!("api_login_refusal_unknown_org", answer(status, refused));

    // Queries.
    golden!(
        "api_users",
        call(
            "GET",
            "/v1/orgs/acme/users?limit=1",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_users_by_role",
        call(
            "GET",
            "/v1/orgs/acme/users?role=Agent",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_users_refusal_malformed",
        call(
            "GET",
            "/v1/orgs/acme/users?limit=many",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_users_refusal_forbidden",
        call("GET", "/v1/orgs/other/users", Some(&read_token), None)
    );
    let as_of = format!("/v1/orgs/acme/users/bob%40example.com?as_of_seq={bob_provisioned_seq}");
    golden!(
        "api_user_as_of_seq",
        call("GET", &as_of, Some(&read_token), None)
    );
    golden!(
        "api_user_as_of_seq_refusal_not_yet",
        call(
            "GET",
            "/v1/orgs/acme/users/bob%40example.com?as_of_seq=1",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_user_refusal_not_found",
        call("GET", "/v1/orgs/acme/users/nobody", Some(&read_token), None)
    );
    golden!(
        "api_user_refusal_malformed_as_of",
        call(
            "GET",
            "/v1/orgs/acme/users/bob%40example.com?as_of=yesterday",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_history_refusal_not_found",
        call(
            "GET",
            "/v1/orgs/acme/users/nobody/history",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_acl",
        call(
            "GET",
            "/v1/orgs/acme/acl?on=acct-1&on_type=account",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_acl_refusal_malformed",
        call(
            "GET",
            "/v1/orgs/acme/acl?on=acct-1&on_type=room",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_rejected",
        call(
            "GET",
            "/v1/orgs/acme/logins/rejected",
            Some(&read_token),
            None
        )
    );
    golden!(
        "api_events",
        call("GET", "/v1/events?after=1&limit=3", Some(ADMIN), None)
    );
    golden!(
        "api_events_refusal_forbidden",
        call("GET", "/v1/events", Some(&read_token), None)
    );
    golden!(
        "api_events_refusal_malformed",
        call("GET", "/v1/events?limit=100000", Some(ADMIN), None)
    );

    // Revocation: 204 with no body, then the token is refused; an unknown ID is 404.
    let revoke = format!("/v1/orgs/acme/tokens/{read_id}");
    golden!(
        "api_revoke_token",
        call("DELETE", &revoke, Some(ADMIN), None)
    );
    golden!(
        "api_revoke_token_refusal_not_found",
        call("DELETE", &revoke, Some(ADMIN), None)
    );
    golden!(
        "api_revoked_token_refusal_unauthorized",
        call("GET", "/v1/orgs/acme/users", Some(&read_token), None)
    );

    // Requests axum itself refuses get the same error body.
    golden!(
        "api_refusal_method_not_allowed",
        call("DELETE", "/v1/orgs", Some(ADMIN), None)
    );
    golden!(
        "api_refusal_no_route",
        call("GET", "/v2/anything", None, None)
    );
    // A 405 still names the methods the route takes.
    let raw = std::net::TcpStream::connect(&server.address).and_then(|mut stream| {
        use std::io::Write as _;
        let request = format!(
            "DELETE /v1/orgs HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.address
        );
        stream.write_all(request.as_bytes())?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    });
    let raw = raw.unwrap().to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 405"), "{raw}");
    assert!(raw.contains("\r\nallow: post\r\n"), "{raw}");
}
