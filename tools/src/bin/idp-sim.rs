//! `idp-sim`: a command-line test IdP. Prints IdP metadata, or a freshly signed SAML
//! Response (raw XML, or base64 for the `SAMLResponse` field of the HTTP-POST binding).
//!
//! It signs with the committed test keys only; it is for tests, demos and load generation,
//! never for real logins.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jitledger::saml::instant;
use jitledger_tools::idp::{self, Attribute, ResponseSpec, Sign};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Parser)]
#[command(
    name = "idp-sim",
    about = "A test SAML 2.0 IdP that signs fresh responses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print IdP metadata naming the key's certificate.
    Metadata {
        #[arg(long)]
        entity_id: String,
        /// Location of the HTTP-Redirect and HTTP-POST SingleSignOnService.
        #[arg(long)]
        sso_url: String,
        #[arg(long, default_value = "rsa2048", value_parser = key_names())]
        key: String,
    },
    /// Print a signed SAML Response.
    Sign(Box<SignArgs>),
}

#[derive(Debug, Args)]
struct SignArgs {
    #[arg(long)]
    idp_entity_id: String,
    #[arg(long)]
    sp_entity_id: String,
    /// The SP's Assertion Consumer Service URL: Destination and Recipient.
    #[arg(long)]
    acs_url: String,
    #[arg(long)]
    name_id: String,
    /// NameID Format.
    #[arg(long, default_value = idp::NAME_ID_FORMAT_EMAIL)]
    name_id_format: String,
    /// `name=value`; repeat a name to give it several values.
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// NameFormat written on every Attribute (none by default).
    #[arg(long, value_name = "URI")]
    attribute_name_format: Option<String>,
    #[arg(long, value_enum, default_value_t = SignArg::Assertion)]
    sign: SignArg,
    /// A committed test key; it also fixes the algorithm (p256: ecdsa-sha256, legacy-sha1:
    /// rsa-sha1 with SHA-1 digests, others: rsa-sha256).
    #[arg(long, default_value = "rsa2048", value_parser = key_names())]
    key: String,
    /// The AuthnRequest ID this answers; without it the login is IdP-initiated.
    #[arg(long)]
    in_response_to: Option<String>,
    /// The instant the response is issued at (RFC 3339); the current time by default.
    #[arg(long, value_parser = parse_instant)]
    now: Option<OffsetDateTime>,
    /// Conditions and SubjectConfirmationData NotOnOrAfter, after `--now`.
    #[arg(long, default_value_t = idp::VALIDITY_DEFAULT_SECONDS)]
    validity_seconds: i64,
    /// Response ID; derived from the other inputs by default.
    #[arg(long)]
    response_id: Option<String>,
    /// Assertion ID; derived from the other inputs by default.
    #[arg(long)]
    assertion_id: Option<String>,
    /// Use fresh random Response and Assertion IDs (for repeated logins at one instant).
    #[arg(long, conflicts_with_all = ["response_id", "assertion_id"])]
    random_ids: bool,
    #[arg(long)]
    session_index: Option<String>,
    /// Print base64 (the HTTP-POST `SAMLResponse` value) instead of XML.
    #[arg(long)]
    base64: bool,
    /// Print empty XML-DSig templates where `--sign` puts signatures, for `xmlsec1 --sign`
    /// to fill, instead of signing (see tools/gen-responses).
    #[arg(long, conflicts_with = "base64")]
    xmlsec1_template: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SignArg {
    Response,
    Assertion,
    Both,
    None,
}

impl From<SignArg> for Sign {
    fn from(sign: SignArg) -> Sign {
        match sign {
            SignArg::Response => Sign::Response,
            SignArg::Assertion => Sign::Assertion,
            SignArg::Both => Sign::Both,
            SignArg::None => Sign::None,
        }
    }
}

fn key_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(idp::FIXTURE_KEYS)
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    instant::parse(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 instant"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("idp-sim: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<String, idp::IdpError> {
    match cli.command {
        Command::Metadata {
            entity_id,
            sso_url,
            key,
        } => {
            let signer = idp::fixture_key(&key)?;
            Ok(idp::metadata_xml(
                &entity_id,
                &sso_url,
                signer.certificate_pem(),
            ))
        }
        Command::Sign(args) => sign(*args),
    }
}

fn sign(args: SignArgs) -> Result<String, idp::IdpError> {
    // The library takes `now` as a parameter; reading the clock is this tool's job.
    let now = args.now.unwrap_or_else(OffsetDateTime::now_utc);
    let mut spec = ResponseSpec::new(
        &args.idp_entity_id,
        &args.sp_entity_id,
        &args.acs_url,
        &args.name_id,
        now,
    )
    .sign(args.sign.into())
    .valid_for(Duration::seconds(args.validity_seconds));
    spec.name_id_format = Some(args.name_id_format);
    spec.in_response_to = args.in_response_to;
    if let Some(index) = args.session_index {
        spec.session_index = Some(index);
    }
    if args.random_ids {
        spec.response_id = idp::random_id()?;
        spec.assertion_id = idp::random_id()?;
    }
    if let Some(id) = args.response_id {
        spec.response_id = id;
    }
    if let Some(id) = args.assertion_id {
        spec.assertion_id = id;
    }
    spec.attributes = group_attributes(args.attributes, args.attribute_name_format.as_deref());

    let signer = idp::fixture_key(&args.key)?;
    if args.xmlsec1_template {
        return spec.xmlsec1_template(signer.algorithm(), signer.digest());
    }
    let xml = spec.signed_xml(&signer)?;
    Ok(if args.base64 {
        format!("{}\n", idp::post_binding_value(&xml))
    } else {
        xml
    })
}

/// One Attribute per name, values in the order given, names in order of first appearance.
fn group_attributes(pairs: Vec<(String, String)>, name_format: Option<&str>) -> Vec<Attribute> {
    let mut attributes: Vec<Attribute> = Vec::new();
    for (name, value) in pairs {
        match attributes.iter_mut().find(|a| a.name == name) {
            Some(attribute) => attribute.values.push(value),
            None => {
                let mut attribute = Attribute::new(&name, [value]);
                attribute.name_format = name_format.map(str::to_string);
                attributes.push(attribute);
            }
        }
    }
    attributes
}
