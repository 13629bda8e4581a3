//! The parts of Kubernetes objects the pool watch reads: an InferencePool's
//! pod selector and target ports, a pod's name and IP, and watch events.

use crate::config::PoolGroup;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why an InferencePool cannot give an allowlist.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A field is missing or of the wrong type.
    #[error("InferencePool {0} is missing or invalid")]
    Field(&'static str),
    /// The selector selects no labels, which would select every pod.
    #[error("InferencePool selector is empty: it would allow every pod of the namespace")]
    EmptySelector,
}

/// What the allowlist is made from: which pods, on which ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pods' label selector, `key=value` pairs joined by commas (in key
    /// order), as the API's `labelSelector` takes it.
    pub selector: String,
    /// The ports a prefill target may name.
    pub ports: Vec<u16>,
}

impl PoolSpec {
    /// Reads the spec of an InferencePool object of API `group`: the GA API
    /// has `spec.selector.matchLabels` and `spec.targetPorts[].number`, the
    /// alpha API `spec.selector` and `spec.targetPortNumber`.
    pub fn from_object(pool: &Value, group: PoolGroup) -> Result<PoolSpec, SpecError> {
        let spec = pool.get("spec").ok_or(SpecError::Field("spec"))?;
        let (labels, ports) = match group {
            PoolGroup::V1 => (
                spec.pointer("/selector/matchLabels")
                    .ok_or(SpecError::Field("spec.selector.matchLabels"))?,
                target_ports(spec)?,
            ),
            PoolGroup::V1Alpha2 => (
                spec.get("selector")
                    .ok_or(SpecError::Field("spec.selector"))?,
                vec![port(spec.get("targetPortNumber"), "spec.targetPortNumber")?],
            ),
        };
        let labels = labels
            .as_object()
            .ok_or(SpecError::Field("spec.selector"))?;
        Ok(PoolSpec {
            selector: selector(labels)?,
            ports,
        })
    }
}

/// `spec.targetPorts[].number` of the GA API: at least one, each valid.
fn target_ports(spec: &Value) -> Result<Vec<u16>, SpecError> {
    const FIELD: &str = "spec.targetPorts";
    let entries = spec
        .get("targetPorts")
        .and_then(Value::as_array)
        .filter(|entries| !entries.is_empty())
        .ok_or(SpecError::Field(FIELD))?;
    entries
        .iter()
        .map(|entry| port(entry.get("number"), "spec.targetPorts[].number"))
        .collect()
}

fn port(value: Option<&Value>, field: &'static str) -> Result<u16, SpecError> {
    value
        .and_then(Value::as_u64)
        .and_then(|number| u16::try_from(number).ok())
        .filter(|&number| number != 0)
        .ok_or(SpecError::Field(field))
}

/// The label selector of `labels` (every value a string), in key order.
fn selector(labels: &Map<String, Value>) -> Result<String, SpecError> {
    if labels.is_empty() {
        return Err(SpecError::EmptySelector);
    }
    let mut pairs = labels
        .iter()
        .map(|(key, value)| {
            value
                .as_str()
                .map(|value| format!("{key}={value}"))
                .ok_or(SpecError::Field("spec.selector"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    pairs.sort();
    Ok(pairs.join(","))
}

/// The `metadata.resourceVersion` of an object or a list.
pub fn resource_version(object: &Value) -> Option<&str> {
    object.pointer("/metadata/resourceVersion")?.as_str()
}

/// A pod as the allowlist sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddress {
    /// `metadata.name`.
    pub name: String,
    /// `status.podIP`, once the pod has one.
    pub ip: Option<String>,
}

impl PodAddress {
    /// Reads a pod object; `None` without a name.
    pub fn from_object(pod: &Value) -> Option<PodAddress> {
        let name = pod.pointer("/metadata/name")?.as_str()?.to_owned();
        let ip = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned);
        Some(PodAddress { name, ip })
    }

    /// The targets this pod allows on `ports`: its IP and its name, each
    /// as `host:port` (an IPv6 address in brackets), lower case; none
    /// while it has no IP (as llm-d's sidecar has it).
    pub fn targets<'a>(&'a self, ports: &'a [u16]) -> impl Iterator<Item = String> + 'a {
        let hosts = self
            .ip
            .iter()
            .flat_map(move |ip| [ip.as_str(), self.name.as_str()]);
        hosts.flat_map(move |host| {
            ports.iter().map(move |port| {
                if host.contains(':') {
                    format!("[{host}]:{port}").to_ascii_lowercase()
                } else {
                    format!("{host}:{port}").to_ascii_lowercase()
                }
            })
        })
    }
}

/// What a watch event says happened.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventKind {
    /// The object was created (or is new to this watch).
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted.
    Deleted,
    /// A progress marker: the object holds only a resource version.
    Bookmark,
    /// The watch failed (its object is a `Status`; 410 when the resource
    /// version is too old): the watcher lists again.
    Error,
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The object it happened to.
    pub object: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ga_pool_gives_its_match_labels_and_target_ports() {
        let pool = json!({"spec": {
            "selector": {"matchLabels": {"role": "prefill", "app": "qwen"}},
            "targetPorts": [{"number": 8000}, {"number": 8200}],
        }});
        assert_eq!(
            PoolSpec::from_object(&pool, PoolGroup::V1),
            Ok(PoolSpec {
                selector: "app=qwen,role=prefill".into(),
                ports: vec![8000, 8200],
            })
        );
    }

    #[test]
    fn the_alpha_pool_gives_its_selector_and_target_port_number() {
        let pool = json!({"spec": {"selector": {"app": "qwen"}, "targetPortNumber": 8000}});
        assert_eq!(
            PoolSpec::from_object(&pool, PoolGroup::V1Alpha2),
            Ok(PoolSpec {
                selector: "app=qwen".into(),
                ports: vec![8000],
            })
        );
        assert_eq!(
            PoolSpec::from_object(&pool, PoolGroup::V1),
            Err(SpecError::Field("spec.selector.matchLabels")),
            "the GA API's fields are read for the GA group"
        );
    }

    #[test]
    fn pools_that_cannot_give_an_allowlist_are_refused() {
        let spec = |spec: Value| PoolSpec::from_object(&json!({ "spec": spec }), PoolGroup::V1);
        let labels = json!({"matchLabels": {"app": "qwen"}});
        assert_eq!(
            spec(json!({"selector": {"matchLabels": {}}, "targetPorts": [{"number": 1}]})),
            Err(SpecError::EmptySelector)
        );
        assert_eq!(
            spec(json!({"selector": labels, "targetPorts": []})),
            Err(SpecError::Field("spec.targetPorts"))
        );
        for bad in [json!(0), json!(70000), json!("8000"), json!(-1)] {
            assert_eq!(
                spec(json!({"selector": labels, "targetPorts": [{"number": bad}]})),
                Err(SpecError::Field("spec.targetPorts[].number")),
                "{bad}"
            );
        }
        assert_eq!(
            spec(json!({"selector": {"matchLabels": {"app": 1}}, "targetPorts": [{"number": 1}]})),
            Err(SpecError::Field("spec.selector"))
        );
        assert_eq!(
            PoolSpec::from_object(&json!({}), PoolGroup::V1),
            Err(SpecError::Field("spec"))
        );
    }

    #[test]
    fn a_pod_allows_its_ip_and_name_on_each_port_once_it_has_an_ip() {
        let pod = PodAddress::from_object(&json!({
            "metadata": {"name": "Prefill-0"},
            "status": {"podIP": "10.0.0.7"},
        }))
        .unwrap();
        assert_eq!(
            pod.targets(&[8000, 8200]).collect::<Vec<_>>(),
            [
                "10.0.0.7:8000",
                "10.0.0.7:8200",
                "prefill-0:8000",
                "prefill-0:8200"
            ]
        );
        let pending = PodAddress::from_object(&json!({"metadata": {"name": "p"}, "status": {}}));
        assert_eq!(pending.unwrap().targets(&[8000]).count(), 0);
        let v6 = PodAddress::from_object(&json!({
            "metadata": {"name": "p"},
            "status": {"podIP": "FD00::1"},
        }));
        assert_eq!(
            v6.unwrap().targets(&[8000]).collect::<Vec<_>>(),
            ["[fd00::1]:8000", "p:8000"]
        );
        assert_eq!(PodAddress::from_object(&json!({"metadata": {}})), None);
    }

    #[test]
    fn watch_events_name_their_kind() {
        let event: WatchEvent =
            serde_json::from_str(r#"{"type":"DELETED","object":{"metadata":{"name":"p"}}}"#)
                .unwrap();
        assert_eq!(event.kind, EventKind::Deleted);
        assert!(serde_json::from_str::<WatchEvent>(r#"{"type":"RENAMED","object":{}}"#).is_err());
    }
}
