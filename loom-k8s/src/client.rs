//! The Kubernetes client: kube-rs's, speaking HTTP/2 to the API server.
//!
//! kube's own `Client::try_from(Config)` speaks HTTP/1.1 only, so each watch holds a
//! connection and a TLS session of its own: a data plane watches a dozen kinds, a controller
//! more. Over HTTP/2 (the API server offers it through ALPN) every watch and every status
//! write share one connection. The stack is kube's default one (its `ClientBuilder`), with
//! the connector allowing HTTP/2.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config`. What this connector does not handle gets kube's own client: a
/// proxy (`proxy_url`), a fixed TLS server name, client certificates from an exec plugin
/// (kube renews the client when they expire).
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some()
        || config.tls_server_name.is_some()
        || config.auth_info.exec.is_some()
    {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}
