pub mod cli;
pub mod events;
pub mod http;
pub mod provisioning;
pub mod saml;
pub mod service;
pub mod store;

/// The allocator of every binary that links jitledger: see BENCHMARKS.md ("Event log") for
/// why glibc's malloc is not it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
