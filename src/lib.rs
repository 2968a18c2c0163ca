pub mod saml;
