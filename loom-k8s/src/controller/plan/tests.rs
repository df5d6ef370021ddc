use std::collections::HashMap;

use loom_core::Options;

use super::*;
use crate::controller::index::Rollout;
use crate::test_input as input;

#[test]
fn a_gateway_is_programmed_once_its_service_has_an_address_and_a_pod_is_up() {
    let gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
    let service = |spec: &str| {
        format!(
            "{gateway}---\napiVersion: v1\nkind: Service\n\
             metadata: {{name: loom-edge, namespace: web}}\n{spec}"
        )
    };
    let key = ("web".to_owned(), "edge".to_owned());
    let rollout = |available| {
        HashMap::from([(
            ("web".to_owned(), "loom-edge".to_owned()),
            Rollout {
                replicas: 2,
                available,
                controller: String::new(),
            },
        )])
    };
    let run = |yaml: &str, rollouts: Option<&HashMap<(String, String), Rollout>>| {
        let mut opts = Options::default();
        service_readiness(&input(yaml), rollouts, &mut opts);
        let why = opts.gateway_not_programmed.get(&key).cloned();
        let addrs: Vec<String> = opts.gateway_addresses[&key]
            .iter()
            .map(|a| format!("{} {}", a.type_, a.value))
            .collect();
        (why.map(|(r, m)| format!("{}: {m}", r.as_str())), addrs)
    };
    let (why, addrs) = run(gateway, Some(&rollout(1)));
    assert_eq!(
        why.as_deref(),
        Some("AddressNotAssigned: waiting for Service web/loom-edge to be created")
    );
    assert!(addrs.is_empty());
    // A load balancer that has no address yet.
    let lb = service("spec: {type: LoadBalancer, clusterIP: 10.0.0.9}\n");
    let (why, _) = run(&lb, Some(&rollout(1)));
    assert!(
        why.unwrap()
            .starts_with("AddressNotAssigned: waiting for an address")
    );
    let lb_up = format!(
        "{lb}status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.1}}, {{hostname: lb.example}}]}}}}\n"
    );
    let (why, addrs) = run(&lb_up, Some(&rollout(1)));
    assert_eq!(why, None);
    assert_eq!(addrs, ["IPAddress 192.0.2.1", "Hostname lb.example"]);
    // A ClusterIP Service: its cluster IP, once a pod is available.
    let cip = service("spec: {clusterIP: 10.0.0.9}\n");
    let (why, addrs) = run(&cip, Some(&HashMap::new()));
    assert_eq!(
        why.as_deref(),
        Some("Pending: waiting for Deployment web/loom-edge to be created")
    );
    assert_eq!(addrs, ["IPAddress 10.0.0.9"]);
    let (why, _) = run(&cip, Some(&rollout(0)));
    assert_eq!(
        why.as_deref(),
        Some(
            "Pending: waiting for a data-plane pod of Deployment web/loom-edge (0 of 2 available)"
        )
    );
    assert_eq!(run(&cip, Some(&rollout(1))).0, None);
    // All-in-one (no rollouts: the controller's pods serve): the address is enough.
    assert_eq!(
        run(&cip, None),
        (None, vec!["IPAddress 10.0.0.9".to_owned()])
    );
    assert!(run(&lb, None).0.unwrap().starts_with("AddressNotAssigned"));
}
