//! `loom controller`: Gateway API objects from Kubernetes in, traffic and status out.
//! All-in-one mode: this process serves every Gateway of Loom's classes itself. Provisioned
//! mode (`--provision`): it creates a Deployment of `loom data-plane` pods per Gateway, which
//! watch the API read-only and serve that Gateway.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use loom_core::status::StatusAddress;
use loom_k8s::addresses::Ipv4Net;
use loom_k8s::{ControllerOptions, LeaseOptions};
use loom_pingora::{ServeOptions, SnapshotHandle};

/// How long after the last publish the memory compiles freed is handed back to the system:
/// as long as mimalloc waits itself before it purges freed pages (1 s), so that a change that
/// comes less than a second after the last does not fault in again the pages its compile
/// needs (with 250 ms here and changes 300 ms apart at 5,000 routes, page faults were 6 % of
/// the controller's samples).
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// `loom controller`'s settings.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The controllerName of the GatewayClasses this controller serves.
    #[arg(long, default_value = loom_core::CONTROLLER_NAME)]
    controller_name: String,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Give each Gateway without spec.addresses its own IP from this IPv4 network and
    /// listen there (e.g. 127.64.0.0/10 to serve many Gateways on one machine).
    #[arg(long, conflicts_with = "provision")]
    address_pool: Option<Ipv4Net>,
    /// Networks Gateways may ask for in spec.addresses (repeatable; default: the pool's).
    #[arg(long = "usable-network")]
    usable_networks: Vec<Ipv4Net>,
    /// Where Gateways listen when no pool is given (and the address they report).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The address Gateways report in status when no pool is given (default: --bind, or
    /// 127.0.0.1 when binding every interface), e.g. a load balancer's IP or hostname.
    #[arg(long)]
    status_address: Option<String>,
    /// The type of --status-address: IPAddress or Hostname.
    #[arg(long, default_value = "IPAddress", value_parser = ["IPAddress", "Hostname"])]
    status_address_type: String,
    /// Create a Service per Gateway, with the Gateway's spec.infrastructure labels and
    /// annotations, owned by the Gateway.
    #[arg(long)]
    gateway_services: bool,
    /// Provisioned mode: per Gateway, a ServiceAccount, a Deployment of `loom data-plane`
    /// pods serving only that Gateway and a Service selecting them, shaped by the
    /// GatewayClassConfig of the Gateway or its class. This process serves no Gateway.
    #[arg(long)]
    provision: bool,
    /// The image of the data-plane pods.
    #[arg(long, default_value_t = loom_k8s::provision::DataPlane::default().image)]
    data_plane_image: String,
    /// Their imagePullPolicy.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["IfNotPresent", "Always", "Never"])]
    data_plane_image_pull_policy: String,
    /// The read-only ClusterRole of data-plane pods, and the ClusterRoleBinding of the same
    /// name whose subjects Loom keeps (both come with Loom's RBAC).
    #[arg(long, default_value = "loom-data-plane")]
    data_plane_cluster_role: String,
    /// RUST_LOG of the data-plane pods.
    #[arg(long, default_value = "info")]
    data_plane_log: String,
    /// The log format of the data-plane pods (`--log-format`).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    data_plane_log_format: String,
    /// The type of those Services.
    #[arg(long, default_value = "ClusterIP", value_parser = ["ClusterIP", "NodePort", "LoadBalancer"])]
    gateway_service_type: String,
    /// The pods those Services select, as key=value (repeatable; none: no selector). Only
    /// pods in the Gateway's namespace match; see --gateway-service-endpoints-from.
    #[arg(long = "gateway-service-selector", value_parser = key_value)]
    gateway_service_selector: Vec<(String, String)>,
    /// This controller's own Service, as namespace/name: each per-Gateway Service gets an
    /// EndpointSlice with that Service's ready endpoints (these pods), in any namespace.
    #[arg(long, value_parser = namespaced_name, conflicts_with = "provision")]
    gateway_service_endpoints_from: Option<(String, String)>,
    /// The admin listener (/metrics, /healthz, /readyz, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Namespace of the Lease that elects the status writer.
    #[arg(long, default_value = "default")]
    lease_namespace: String,
    /// Name of that Lease.
    #[arg(long, default_value = "loom-gateway-controller")]
    lease_name: String,
    /// This replica's identity in the Lease (default: hostname-pid).
    #[arg(long)]
    identity: Option<String>,
    /// Lease duration in seconds (a new leader takes over within this).
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Write status without a Lease (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    #[command(flatten)]
    data_plane: crate::serve::DataPlaneFlags,
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "loom".into());
    format!("{host}-{}", std::process::id())
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let shown = if args.bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.bind
    };
    let services = args.gateway_services || args.provision;
    let opts = ControllerOptions {
        // Provisioned, the controller serves no Gateway: nothing to share what it would keep.
        reuse_compiles: !args.provision,
        field_manager: args.controller_name.clone(),
        compile: loom_core::Options {
            controller_name: args.controller_name.clone(),
            global_rate_limits: args.data_plane.redis_url.is_some(),
            extra_features: if services {
                vec!["GatewayInfrastructurePropagation".into()]
            } else {
                vec![]
            },
            default_addresses: vec![match &args.status_address {
                Some(value) => StatusAddress {
                    type_: args.status_address_type.clone(),
                    value: value.clone(),
                },
                None => StatusAddress {
                    type_: "IPAddress".into(),
                    value: shown.to_string(),
                },
            }],
            ..Default::default()
        },
        provision: services.then(|| loom_k8s::provision::Provision {
            selector: args.gateway_service_selector.iter().cloned().collect(),
            endpoints_from: args.gateway_service_endpoints_from.clone(),
            service_type: args.gateway_service_type.clone(),
            data_plane: args.provision.then(|| loom_k8s::provision::DataPlane {
                image: args.data_plane_image.clone(),
                image_pull_policy: args.data_plane_image_pull_policy.clone(),
                controller_name: args.controller_name.clone(),
                cluster_role: args.data_plane_cluster_role.clone(),
                admin_port: 9901,
                log: args.data_plane_log.clone(),
                log_format: args.data_plane_log_format.clone(),
                redis: args
                    .data_plane
                    .redis_url
                    .clone()
                    .map(|url| (url, args.data_plane.redis_timeout_ms)),
            }),
        }),
        address_pool: args.address_pool,
        usable_networks: args.usable_networks.clone(),
        lease: (!args.no_leader_election).then(|| LeaseOptions {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: args.identity.clone().unwrap_or_else(identity),
            duration_seconds: args.lease_seconds,
        }),
        ..Default::default()
    };
    let serve = crate::serve::serve_options(args.bind, args.admin, args.threads, &args.data_plane);
    // Provisioned: the data-plane pods serve the Gateways, this process only its admin port
    // (it still loads every WASMPlugin module, so that their status says whether they load).
    let plugins = args.data_plane.plugins();
    serve_from_kubernetes(opts, args.kubeconfig, serve, !args.provision, plugins)
}

/// `loom data-plane`'s settings.
#[derive(Debug, clap::Args)]
pub(crate) struct DataPlaneArgs {
    /// The Gateway to serve, as namespace/name.
    #[arg(long, value_parser = namespaced_name)]
    gateway: (String, String),
    /// The controllerName of Loom's GatewayClasses.
    #[arg(long, default_value = loom_core::CONTROLLER_NAME)]
    controller_name: String,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where the Gateway's listeners listen.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The admin listener (/metrics, /healthz, /readyz, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    data_plane: crate::serve::DataPlaneFlags,
}

/// `loom data-plane`: serve one Gateway from the API, read-only (the pods `--provision`
/// creates run this).
pub(crate) fn run_data_plane(args: DataPlaneArgs) -> Result<ExitCode> {
    let opts = ControllerOptions {
        compile: loom_core::Options {
            controller_name: args.controller_name.clone(),
            global_rate_limits: args.data_plane.redis_url.is_some(),
            ..Default::default()
        },
        lease: None,
        data_plane_of: Some(args.gateway.clone()),
        ..Default::default()
    };
    tracing::info!("serving Gateway {}/{}", args.gateway.0, args.gateway.1);
    let serve = crate::serve::serve_options(args.bind, args.admin, args.threads, &args.data_plane);
    let plugins = args.data_plane.plugins();
    serve_from_kubernetes(opts, args.kubeconfig, serve, true, plugins)
}

fn namespaced_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{s:?} is not namespace/name")),
    }
}

/// Runs the controller loop on its own thread and the data plane on this one. Without
/// `serve_gateways` the snapshots keep no Gateway (only the admin listener runs).
fn serve_from_kubernetes(
    mut opts: ControllerOptions,
    kubeconfig: Option<PathBuf>,
    serve: ServeOptions,
    serve_gateways: bool,
    plugins: loom_pingora::plugin::Plugins,
) -> Result<ExitCode> {
    let handle = SnapshotHandle::with_plugins(plugins.clone());
    opts.plugin_modules = Some(loom_k8s::PluginModules {
        changes: plugins.changes(),
        sync: Arc::new(move |input| plugins.sync(input)),
    });
    // The ports the data plane could not open go into listener status.
    let (ports_tx, ports_rx) = tokio::sync::watch::channel(Default::default());
    opts.ports_not_serving = Some(ports_rx);
    let mut listening = handle.listening();
    let publisher = handle.clone();
    let latest = Arc::new(AtomicU64::new(0));
    let publish: loom_k8s::Publish = Arc::new(move |mut snapshot: loom_core::Snapshot, took| {
        if !serve_gateways {
            snapshot.gateways.clear();
        }
        let served = publisher.publish_first(snapshot, took);
        let latest = latest.clone();
        Box::new(move |status| {
            let g = served.status(status);
            tracing::info!("configuration {g} compiled in {took:?}");
            // Freed memory goes back to the system once compiles pause, not after each
            // one: in a burst the next compile would fault the pages in again (at 5,000
            // routes a collect took ~9% of the controller's time). The controller's
            // runtime has one thread, the one whose memory is collected.
            latest.store(g, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(RELEASE_AFTER).await;
                if latest.load(Ordering::Relaxed) == g {
                    crate::release_freed_memory();
                }
            });
        })
    });
    std::thread::Builder::new()
        .name("loom-controller".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let result = rt.block_on(async move {
                tokio::spawn(async move {
                    while listening.changed().await.is_ok() {
                        let ports = listening.borrow_and_update().ports_not_serving();
                        ports_tx.send_if_modified(|current| {
                            let changed = *current != ports;
                            *current = ports;
                            changed
                        });
                    }
                });
                let client = client(kubeconfig.as_ref()).await?;
                loom_k8s::run(client, opts, publish).await;
                anyhow::Ok(())
            });
            if let Err(e) = result {
                tracing::error!("the controller stopped: {e:#}");
                std::process::exit(1);
            }
        })?;
    if let Some(admin) = serve.admin {
        tracing::info!("admin on http://{admin}");
    }
    loom_pingora::server(handle, &serve)?.run_forever()
}
