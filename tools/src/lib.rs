pub mod client;
pub mod idp;
