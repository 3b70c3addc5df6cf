//! Each broadcast pod's own LoadBalancer Service, as data (pure; the API calls are in
//! [`super::k8s`]).
//!
//! GKE Autopilot refuses `hostNetwork` and fixed `hostPort`, so a pod of the broadcast
//! StatefulSet is reached through a LoadBalancer Service of its own: one UDP port (and the same
//! TCP port for ICE-TCP), selecting exactly that pod by the label the StatefulSet controller
//! puts on it, `externalTrafficPolicy: Local` (no second hop, the client's address preserved).
//! The pod creates or adopts the Service `<pod>-media` at start, waits for its external address
//! and advertises it in its ICE candidates. The Service is owned by the StatefulSet (deleted with
//! it), not by the pod: a restarted pod finds its address where it left it instead of waiting
//! for a new load balancer. Services of pods a scale-down removed are deleted by the pods that
//! remain (see [`stale_services`]).

use std::net::IpAddr;

use serde_json::{Value, json};

/// The label every such Service carries, with the StatefulSet's name as value.
pub const MANAGED_LABEL: &str = "firesfu.dev/media-for";

/// Who the Service belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub statefulset: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub pod: String,
    pub namespace: String,
    pub udp_port: u16,
    /// ICE-TCP listeners: (the port the Service exposes, the pod's port). Empty without
    /// ICE-TCP.
    pub tcp_ports: Vec<(u16, u16)>,
    pub owner: Owner,
}

pub fn service_name(pod: &str) -> String {
    format!("{pod}-media")
}

/// `broadcast-3` → (`broadcast`, 3): a StatefulSet pod's set and ordinal.
pub fn statefulset_of(pod: &str) -> Option<(&str, u32)> {
    let (set, ordinal) = pod.rsplit_once('-')?;
    Some((set, ordinal.parse().ok()?))
}

/// The Service to create (or to patch an adopted one into).
pub fn manifest(spec: &ServiceSpec) -> Value {
    let mut ports = vec![json!({
        "name": "media-udp", "protocol": "UDP", "port": spec.udp_port, "targetPort": spec.udp_port,
    })];
    for (i, (port, target)) in spec.tcp_ports.iter().enumerate() {
        let name = if i == 0 {
            "media-tcp".to_owned()
        } else {
            format!("media-tcp-{i}")
        };
        ports.push(json!({
            "name": name, "protocol": "TCP", "port": port, "targetPort": target,
        }));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(&spec.pod),
            "namespace": spec.namespace,
            // UDP and TCP on one address: GKE builds such (mixed-protocol) Services on a
            // backend-service-based passthrough load balancer.
            "annotations": {"cloud.google.com/l4-rbs": "enabled"},
            "labels": {
                MANAGED_LABEL: spec.owner.statefulset,
                "app.kubernetes.io/managed-by": "firesfu-broadcast",
                "app.kubernetes.io/component": "media",
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": spec.owner.statefulset,
                "uid": spec.owner.uid,
            }],
        },
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            // An IPv6 address too where the cluster has one (dual-stack clusters).
            "ipFamilyPolicy": "PreferDualStack",
            "selector": {"statefulset.kubernetes.io/pod-name": spec.pod},
            "ports": ports,
        },
    })
}

/// The Service's external addresses (IPv4, and IPv6 on dual-stack clusters), once the load
/// balancer has them.
pub fn external_addresses(service: &Value) -> Vec<IpAddr> {
    service
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("ip")?.as_str()?.parse().ok())
        .collect()
}

/// Names of managed Services (of `statefulset`) whose pod a scale-down removed: ordinal ≥
/// `replicas`. Their load balancers cost money and nothing uses them.
pub fn stale_services(list: &Value, statefulset: &str, replicas: u32) -> Vec<String> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| {
            s.pointer(&format!(
                "/metadata/labels/{}",
                MANAGED_LABEL.replace('/', "~1")
            )) == Some(&json!(statefulset))
        })
        .filter_map(|s| s.pointer("/metadata/name")?.as_str())
        .filter(|name| {
            name.strip_suffix("-media")
                .and_then(statefulset_of)
                .is_some_and(|(set, ordinal)| set == statefulset && ordinal >= replicas)
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            pod: "broadcast-2".into(),
            namespace: "firesfu".into(),
            udp_port: 4443,
            tcp_ports: vec![(4443, 4443), (443, 4444)],
            owner: Owner {
                statefulset: "broadcast".into(),
                uid: "u-1".into(),
            },
        }
    }

    #[test]
    fn a_pod_gets_a_load_balancer_selecting_only_itself() {
        let m = manifest(&spec());
        assert_eq!(m["metadata"]["name"], "broadcast-2-media");
        assert_eq!(m["spec"]["type"], "LoadBalancer");
        assert_eq!(m["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(
            m["spec"]["selector"],
            json!({"statefulset.kubernetes.io/pod-name": "broadcast-2"})
        );
        let ports = m["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[0]["protocol"], "UDP");
        assert_eq!(ports[1]["protocol"], "TCP");
        assert_eq!(
            (&ports[2]["port"], &ports[2]["targetPort"]),
            (&json!(443), &json!(4444))
        );
        assert_ne!(ports[1]["name"], ports[2]["name"]);
        assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let udp_only = manifest(&ServiceSpec {
            tcp_ports: vec![],
            ..spec()
        });
        assert_eq!(udp_only["spec"]["ports"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn reads_the_address_once_provisioned() {
        assert!(external_addresses(&json!({"status": {"loadBalancer": {}}})).is_empty());
        let ready = json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "34.1.2.3"}, {"ip": "2600:1900::7"}
        ]}}});
        assert_eq!(
            external_addresses(&ready),
            vec![
                "34.1.2.3".parse::<IpAddr>().unwrap(),
                "2600:1900::7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn pods_know_their_set_and_ordinal() {
        assert_eq!(statefulset_of("broadcast-12"), Some(("broadcast", 12)));
        assert_eq!(statefulset_of("my-set-0"), Some(("my-set", 0)));
        assert_eq!(statefulset_of("laptop"), None);
    }

    #[test]
    fn services_beyond_the_replicas_are_stale() {
        let svc = |name: &str, set: &str| json!({"metadata": {"name": name, "labels": {MANAGED_LABEL: set}}});
        let list = json!({"items": [
            svc("broadcast-0-media", "broadcast"),
            svc("broadcast-1-media", "broadcast"),
            svc("broadcast-2-media", "broadcast"),
            svc("broadcast-5-media", "broadcast"),
            svc("other-3-media", "other"),
        ]});
        assert_eq!(
            stale_services(&list, "broadcast", 2),
            ["broadcast-2-media", "broadcast-5-media"]
        );
    }
}
