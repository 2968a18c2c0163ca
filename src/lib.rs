pub mod cli;
pub mod events;
pub mod http;
pub mod provisioning;
pub mod saml;
pub mod service;
pub mod store;
