pub mod http;
pub mod saml;
