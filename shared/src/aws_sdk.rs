//! The AWS SDK configuration every function's cold start builds its clients from: one place, one HTTP
//! client.
//!
//! Without it each `aws_sdk_*::Client::new(&sdk)` gets its own default HTTP client: its own connection
//! pool and its own TLS setup, paid again for every client a function builds (stock-sync builds four).
//! Here the config carries one [`SharedHttpClient`], so every client of a cold start shares the pool
//! and the TLS setup.
//!
//! The standard AWS environment still applies (`AWS_REGION`, `AWS_ENDPOINT_URL` for moto or LocalStack,
//! the credentials chain).

use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The SDK configuration from the environment, with one HTTP client for every client built from it.
///
/// Call it once per cold start and build every client from the result (clients built from one
/// config share its connection pool).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    with_shared_http_client(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .load()
        .await
}

/// `loader` with the one HTTP client every client built from its config will share.
pub fn with_shared_http_client(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader.http_client(http_client())
}

/// The roots of Amazon Trust Services, which sign every AWS service endpoint's certificate (the
/// Starfield root cross-signs them for old clients). Public certificates, valid until 2037–2040.
pub const AMAZON_ROOTS: [&str; 5] = [
    include_str!("../certs/amazon-root-ca-1.pem"),
    include_str!("../certs/amazon-root-ca-2.pem"),
    include_str!("../certs/amazon-root-ca-3.pem"),
    include_str!("../certs/amazon-root-ca-4.pem"),
    include_str!("../certs/starfield-services-root-ca-g2.pem"),
];

/// Set to `true` to trust the OS store instead of [`AMAZON_ROOTS`]: an endpoint behind a TLS-inspecting
/// proxy, or an `AWS_ENDPOINT_URL` over HTTPS with its own CA.
pub const NATIVE_ROOTS_VAR: &str = "POS_AWS_NATIVE_ROOTS";

/// What the SDK's TLS trusts: the compiled-in [`AMAZON_ROOTS`] (five certificates), unless `native`.
/// Parsing the OS store instead (about 140 PEM certificates) was the largest single cost of a cold
/// start: over a quarter of `sale-capture`'s instructions in a 16-invocation callgrind run.
pub fn trust_store(native: bool) -> tls::TrustStore {
    if native {
        return tls::TrustStore::default();
    }
    AMAZON_ROOTS
        .iter()
        .fold(tls::TrustStore::empty(), |store, pem| {
            store.with_pem_certificate(pem.as_bytes())
        })
}

/// The HTTPS client (rustls on aws-lc-rs, the provider the rest of the process uses), trusting
/// [`trust_store`].
pub fn http_client() -> SharedHttpClient {
    let native = std::env::var(NATIVE_ROOTS_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    match tls::TlsContext::builder()
        .with_trust_store(trust_store(native))
        .build()
    {
        Ok(context) => builder.tls_context(context).build_https(),
        // Not reachable with the compiled-in roots (a test parses them); the SDK's default is safe.
        Err(e) => {
            tracing::warn!(error = %e, "TLS context refused; using the OS trust store");
            builder.build_https()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 endpoint answering `200 {}` to everything on kept-alive connections; counts the
    /// connections it accepts.
    async fn counting_endpoint() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 64 * 1024];
                    // One read per request: the SDK's small requests arrive in one segment on loopback.
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\n\r\n{}";
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), accepted)
    }

    #[test]
    fn the_compiled_in_roots_are_the_amazon_trust_services_certificates() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        for pem in AMAZON_ROOTS {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("PEM");
            assert_eq!(certs.len(), 1, "one certificate per constant");
            let der = certs[0].as_ref();
            let has = |name: &[u8]| der.windows(name.len()).any(|w| w == name);
            assert!(
                has(b"Amazon Root CA") || has(b"Starfield Services Root Certificate Authority"),
                "an Amazon Trust Services root"
            );
        }
        assert!(
            tls::TlsContext::builder()
                .with_trust_store(trust_store(false))
                .build()
                .is_ok()
        );
    }

    /// Clients of different services built from one config share one connection pool: two calls, one
    /// connection (with a default client per service, each opens its own).
    #[tokio::test]
    async fn clients_built_from_one_config_share_one_connection_pool() {
        let (endpoint, accepted) = counting_endpoint().await;
        let sdk =
            with_shared_http_client(aws_config::defaults(aws_config::BehaviorVersion::latest()))
                .endpoint_url(&endpoint)
                .region(aws_config::Region::new("eu-west-1"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .load()
                .await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let bus = aws_sdk_eventbridge::Client::new(&sdk);
        dynamo.list_tables().send().await.expect("DynamoDB answers");
        bus.list_event_buses()
            .send()
            .await
            .expect("EventBridge answers");
        dynamo
            .list_tables()
            .send()
            .await
            .expect("DynamoDB answers again");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");
    }
}
