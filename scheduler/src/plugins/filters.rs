//! Filters: keep the candidates a profile may pick from.

use crate::pool::{Endpoint, Role};
use std::sync::Arc;

/// Keeps endpoints by P/D role (llm-d's `decode-filter` and `prefill-filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleFilter {
    /// `decode-filter`: decode and both (an unlabeled pod is decode).
    Decode,
    /// `prefill-filter`: prefill only.
    Prefill,
}

impl RoleFilter {
    /// Whether `endpoint` passes.
    pub fn accepts(self, endpoint: &Endpoint) -> bool {
        match self {
            RoleFilter::Decode => matches!(endpoint.role(), Role::Decode | Role::Both),
            RoleFilter::Prefill => endpoint.role() == Role::Prefill,
        }
    }

    /// Removes the endpoints that do not pass.
    pub fn apply(self, candidates: &mut Vec<Arc<Endpoint>>) {
        candidates.retain(|e| self.accepts(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{EndpointSpec, PoolSnapshot};

    #[test]
    fn roles_are_filtered_like_llm_d() {
        let addr = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
        let snap = PoolSnapshot::new(vec![
            EndpointSpec::new(addr(1), "m").with_role("prefill"),
            EndpointSpec::new(addr(2), "m").with_role("decode"),
            EndpointSpec::new(addr(3), "m").with_role("both"),
            EndpointSpec::new(addr(4), "m"),
        ]);
        let ports = |filter: RoleFilter| {
            let mut c = snap.endpoints().to_vec();
            filter.apply(&mut c);
            c.iter()
                .map(|e| e.spec().address.port())
                .collect::<Vec<_>>()
        };
        assert_eq!(ports(RoleFilter::Decode), [2, 3, 4]);
        assert_eq!(ports(RoleFilter::Prefill), [1]);
    }
}
