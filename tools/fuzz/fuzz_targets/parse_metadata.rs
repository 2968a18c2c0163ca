//! IdP metadata through `parse_idp_metadata`, without and with an entity ID to pick.
#![no_main]

use jitledger::saml::metadata::parse_idp_metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(metadata) = parse_idp_metadata(data, None) {
        let _ = metadata.redirect_sso_location();
        let _ = format!("{metadata:?}");
    }
    let _ = parse_idp_metadata(data, Some("https://idp.example.com/metadata"));
});
