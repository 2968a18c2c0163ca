//! The engine-independent event log checks, run on the embedded sled store.

use jitledger::store::conformance::CHECKS;
use jitledger::store::{Store, StoreConfig};

#[test]
fn sled_store_passes_every_conformance_check() {
    for (name, check) in CHECKS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        println!("conformance: {name}");
        check(&store);
    }
}
