//! `[cluster]`: Kubernetes-aware membership and connection rebalancing.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[cluster]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Watch the EndpointSlices of `kube_service` to know which peers are ready (needs the
    /// Kubernetes API: in a pod, its service account; elsewhere, a kubeconfig).
    pub kube_membership: bool,
    /// The headless Service whose ready endpoints are this node's peers.
    pub kube_service: String,
    /// Its namespace; empty: the pod's own (the service account's).
    pub kube_namespace: String,
    /// Move connections from a node above the cluster mean to the others, a few at a time.
    pub rebalance: bool,
    /// How far above the mean (a fraction of it) a node may be before it starts shedding.
    pub rebalance_tolerance: f64,
    /// Clients advised to reconnect elsewhere per second, at most.
    pub rebalance_rate_per_s: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            kube_membership: false,
            kube_service: String::new(),
            kube_namespace: String::new(),
            rebalance: false,
            rebalance_tolerance: 0.10,
            rebalance_rate_per_s: 10,
        }
    }
}

/// Kubernetes object names: DNS labels (RFC 1123), 1–63 characters.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl ClusterConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if self.kube_membership && !dns_label(&self.kube_service) {
            return bad("cluster.kube_service", "must name the headless Service (a DNS label) with kube_membership on");
        }
        if !self.kube_namespace.is_empty() && !dns_label(&self.kube_namespace) {
            return bad("cluster.kube_namespace", "must be a namespace name (a DNS label) or empty");
        }
        if !(0.0..=10.0).contains(&self.rebalance_tolerance) {
            return bad("cluster.rebalance_tolerance", "must be between 0 and 10 (a fraction of the mean)");
        }
        if !(1..=10_000).contains(&self.rebalance_rate_per_s) {
            return bad("cluster.rebalance_rate_per_s", "must be between 1 and 10000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(c: &ClusterConfig) -> Option<&'static str> {
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            _ => None,
        }
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c = ClusterConfig::default();
        assert!(!c.kube_membership && !c.rebalance);
        assert_eq!(key_of(&c), None);
    }

    #[test]
    fn membership_needs_a_service_name() {
        let mut c = ClusterConfig { kube_membership: true, ..Default::default() };
        assert_eq!(key_of(&c), Some("cluster.kube_service"));
        for bad in ["Arqonbus", "-x", "x-", "a_b", &"a".repeat(64)] {
            c.kube_service = bad.into();
            assert_eq!(key_of(&c), Some("cluster.kube_service"), "{bad}");
        }
        c.kube_service = "arqonbus-headless".into();
        assert_eq!(key_of(&c), None);
        c.kube_namespace = "Prod".into();
        assert_eq!(key_of(&c), Some("cluster.kube_namespace"));
    }

    #[test]
    fn rebalance_bounds() {
        let c = ClusterConfig { rebalance_tolerance: -0.1, ..Default::default() };
        assert_eq!(key_of(&c), Some("cluster.rebalance_tolerance"));
        let c = ClusterConfig { rebalance_tolerance: f64::NAN, ..Default::default() };
        assert_eq!(key_of(&c), Some("cluster.rebalance_tolerance"));
        let c = ClusterConfig { rebalance_rate_per_s: 0, ..Default::default() };
        assert_eq!(key_of(&c), Some("cluster.rebalance_rate_per_s"));
    }
}
