use super::*;
use crate::test_input as input;

#[test]
fn a_data_plane_keeps_its_gateway_and_the_routes_that_may_attach_to_it() {
    let input = input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mine, namespace: web}
spec: {parentRefs: [{name: other}, {name: edge, sectionName: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: from-elsewhere, namespace: app}
spec: {parentRefs: [{name: edge, namespace: web}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-name-other-namespace, namespace: app}
spec: {parentRefs: [{name: edge}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: theirs, namespace: web}
spec: {parentRefs: [{name: other}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-listener-set, namespace: web}
spec: {parentRefs: [{kind: ListenerSet, name: extra}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
"#,
    );
    let gateway = ("web".to_owned(), "edge".to_owned());
    let kept: Vec<String> = input
        .objects()
        .into_iter()
        .filter(|o| for_gateway(o, &gateway))
        .map(|o| o.metadata().name.clone())
        .collect();
    assert_eq!(
        kept,
        ["edge", "mine", "via-listener-set", "from-elsewhere", "svc"],
        "{kept:?}"
    );
}
