//! SAML 2.0 Web SSO validation: pure functions from bytes, trust configuration and the
//! current instant to a [`response::ValidatedLogin`] or a typed refusal.
//!
//! Architecture invariant: nothing in this module does I/O or reads the clock; `now` is
//! always a parameter.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod authn_request;
pub mod c14n;
pub mod dsig;
pub mod error;
pub mod instant;
pub mod keys;
pub mod limits;
pub mod metadata;
pub mod response;
pub mod xml;

pub use error::SamlError;
