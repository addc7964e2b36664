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

/// The HTTPS client (rustls on aws-lc-rs, the provider the rest of the process uses).
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
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
