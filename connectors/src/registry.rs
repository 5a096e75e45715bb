//! The explicit list of built-in connectors, and the registry of connectors by provider type
//! (built-ins and discovered plugins).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::provider::ConnectorFactory;

/// The built-in connectors, in one explicit list (grep-able, unlike self-registration).
pub fn builtin() -> Vec<Arc<dyn ConnectorFactory>> {
    vec![
        Arc::new(crate::github_app::Factory),
        Arc::new(crate::gitlab::Factory),
        Arc::new(crate::harbor::Factory),
        Arc::new(crate::oci_registry::Factory),
        Arc::new(crate::cloud_registry::ecr::Factory),
        Arc::new(crate::cloud_registry::acr::Factory),
        Arc::new(crate::cloud_registry::gar::Factory),
        Arc::new(crate::cloud_registry::ghcr::Factory),
        Arc::new(crate::memory::Factory),
    ]
}

/// Connectors by provider type.
#[derive(Clone, Default)]
pub struct Registry {
    by_type: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
}

impl Registry {
    /// A registry of the built-in connectors.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        for factory in builtin() {
            registry.by_type.insert(factory.provider_type(), factory);
        }
        registry
    }

    /// The connector for a provider type, if one is registered.
    pub fn get(&self, provider_type: &str) -> Option<&Arc<dyn ConnectorFactory>> {
        self.by_type.get(provider_type)
    }

    /// Every registered connector, sorted by provider type.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ConnectorFactory>> {
        self.by_type.values()
    }

    /// The registered provider types, sorted.
    pub fn provider_types(&self) -> Vec<&'static str> {
        self.by_type.keys().copied().collect()
    }

    /// Adds a connector at run time (a discovered plugin), replacing and returning the one
    /// registered for the same provider type, if any. Callers keep built-in types out (plugin
    /// discovery rejects them).
    pub fn insert(
        &mut self,
        factory: Arc<dyn ConnectorFactory>,
    ) -> Option<Arc<dyn ConnectorFactory>> {
        self.by_type.insert(factory.provider_type(), factory)
    }

    /// Removes the connector of a provider type at run time (a plugin that disappeared),
    /// returning it.
    pub fn remove(&mut self, provider_type: &str) -> Option<Arc<dyn ConnectorFactory>> {
        self.by_type.remove(provider_type)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_type.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_types_are_unique_and_snake_case() {
        let list = builtin();
        let registry = Registry::with_builtins();
        assert_eq!(
            registry.provider_types().len(),
            list.len(),
            "duplicate provider type"
        );
        for t in registry.provider_types() {
            assert!(t.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{t}");
        }
    }

    #[test]
    fn factories_are_added_replaced_and_removed_at_run_time() {
        let mut registry = Registry::with_builtins();
        let before = registry.provider_types().len();
        assert!(registry.remove("inmemory").is_some());
        assert!(registry.get("inmemory").is_none());
        assert!(registry.insert(Arc::new(crate::memory::Factory)).is_none());
        assert!(registry.insert(Arc::new(crate::memory::Factory)).is_some());
        assert_eq!(registry.provider_types().len(), before);
        assert!(registry.remove("nope").is_none());
    }
}
