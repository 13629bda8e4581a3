//! Pods and the device tiers their KV blocks live on.

use std::fmt;
use std::sync::Arc;

/// A serving pod, identified as in vLLM's KV-event topics
/// (`kv@<pod>@<model>`, usually `ip:port`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId(Arc<str>);

impl PodId {
    /// A pod id.
    pub fn new(id: &str) -> PodId {
        PodId(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PodId {
    fn from(id: &str) -> PodId {
        PodId::new(id)
    }
}

/// Where a cached block lives on a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// GPU memory (vLLM medium `GPU`, or no medium).
    Gpu,
    /// Host memory (medium `CPU`).
    Cpu,
    /// Any other medium (disk, remote store, ...).
    Other,
}

impl Tier {
    /// All tiers, in index order.
    pub const ALL: [Tier; 3] = [Tier::Gpu, Tier::Cpu, Tier::Other];

    /// The tier of a vLLM event's `medium` (case-insensitive; none is GPU).
    pub fn from_medium(medium: Option<&str>) -> Tier {
        match medium {
            None => Tier::Gpu,
            Some(m) if m.eq_ignore_ascii_case("gpu") || m.eq_ignore_ascii_case("cuda") => Tier::Gpu,
            Some(m) if m.eq_ignore_ascii_case("cpu") => Tier::Cpu,
            Some(_) => Tier::Other,
        }
    }

    /// A short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Gpu => "gpu",
            Tier::Cpu => "cpu",
            Tier::Other => "other",
        }
    }

    /// The tier named by [`Tier::as_str`].
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub(crate) fn index(self) -> u32 {
        self as u32
    }

    pub(crate) fn from_index(index: u32) -> Tier {
        match index {
            0 => Tier::Gpu,
            1 => Tier::Cpu,
            _ => Tier::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_maps_to_tier() {
        assert_eq!(Tier::from_medium(None), Tier::Gpu);
        assert_eq!(Tier::from_medium(Some("GPU")), Tier::Gpu);
        assert_eq!(Tier::from_medium(Some("cpu")), Tier::Cpu);
        assert_eq!(Tier::from_medium(Some("DISK")), Tier::Other);
    }

    #[test]
    fn tier_names_round_trip() {
        for tier in Tier::ALL {
            assert_eq!(Tier::from_name(tier.as_str()), Some(tier));
            assert_eq!(Tier::from_index(tier.index()), tier);
        }
    }
}
