//! Org configurations decoded once and shared: every login and every query reads its org's
//! configuration, and decoding it (IdP metadata, roles, token hashes) each time was a
//! measurable share of a login. The writer drops an org's entry when it commits a
//! configuration event of that org, before it answers the append.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::provisioning::config::OrgConfig;

#[derive(Debug, Default)]
pub(crate) struct OrgCache {
    entries: RwLock<HashMap<String, Arc<OrgConfig>>>,
    /// Bumped by every invalidation. A reader keeps what it decoded only if no invalidation
    /// happened since it began to read: otherwise its copy may predate the commit that the
    /// invalidation was for, and would stay stale.
    generation: AtomicU64,
}

impl OrgCache {
    /// The org's configuration, from the cache or from `load`.
    pub fn get_or_load<E>(
        &self,
        org_id: &str,
        load: impl FnOnce() -> Result<Option<OrgConfig>, E>,
    ) -> Result<Option<Arc<OrgConfig>>, E> {
        if let Some(config) = self.read().get(org_id) {
            return Ok(Some(Arc::clone(config)));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(config) = load()? else {
            return Ok(None);
        };
        let config = Arc::new(config);
        let mut entries = self.write();
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.insert(org_id.to_string(), Arc::clone(&config));
        }
        Ok(Some(config))
    }

    /// Forgets the org's entry: its configuration changed in the store.
    pub fn invalidate(&self, org_id: &str) {
        let mut entries = self.write();
        entries.remove(org_id);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets every entry: the projections were rebuilt.
    pub fn clear(&self) {
        let mut entries = self.write();
        entries.clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    // A panic while holding the lock cannot leave the map half-changed (each change is one
    // call), so a poisoned lock is used as it is.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<OrgConfig>>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<OrgConfig>>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration told apart by its SP entity ID.
    fn config(name: &str) -> OrgConfig {
        let created = crate::events::OrgCreated {
            sp_entity_id: name.into(),
            acs_url: "https://sp.example.com/acs".into(),
            clock_skew_seconds: 60,
            allow_idp_initiated: false,
        };
        OrgConfig::created("acme", &created)
    }

    fn loaded(cache: &OrgCache, name: &str) -> String {
        let config = cache
            .get_or_load("acme", || Ok::<_, ()>(Some(config(name))))
            .unwrap()
            .unwrap();
        config.sp_entity_id.clone()
    }

    #[test]
    fn an_entry_is_loaded_once_and_reloaded_after_invalidation() {
        let cache = OrgCache::default();
        assert_eq!(loaded(&cache, "first"), "first");
        assert_eq!(loaded(&cache, "second"), "first");
        cache.invalidate("acme");
        assert_eq!(loaded(&cache, "second"), "second");
        cache.clear();
        assert_eq!(loaded(&cache, "third"), "third");
    }

    #[test]
    fn a_copy_read_before_an_invalidation_is_not_kept() {
        let cache = OrgCache::default();
        // The reader decodes the old configuration; the writer commits and invalidates
        // before the reader stores it.
        let stale = cache
            .get_or_load("acme", || {
                cache.invalidate("acme");
                Ok::<_, ()>(Some(config("old")))
            })
            .unwrap()
            .unwrap();
        assert_eq!(stale.sp_entity_id, "old");
        assert_eq!(loaded(&cache, "new"), "new");
    }

    #[test]
    fn an_unknown_org_is_not_cached() {
        let cache = OrgCache::default();
        assert!(
            cache
                .get_or_load("acme", || Ok::<_, ()>(None))
                .unwrap()
                .is_none()
        );
        assert_eq!(loaded(&cache, "now"), "now");
    }
}
