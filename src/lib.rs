pub mod events;
pub mod http;
pub mod saml;
