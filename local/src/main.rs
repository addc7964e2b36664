//! `pos-local`: runs the platform on one machine (see the crate docs and README).

use clap::{Parser, Subcommand};
use pos_local::server::{LocalOptions, Platform};
use pos_shared::capture::CaptureSettings;
use pos_shared::money::Currency;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "pos-local",
    about = "The POS integration platform on one machine, no AWS account"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhooks and the inspection endpoints on the embedded store.
    Serve {
        /// Listen address (port 0 picks a free port; the chosen address is printed).
        #[arg(long, default_value = "127.0.0.1:3000", env = "POS_LOCAL_ADDR")]
        addr: SocketAddr,
        /// Embedded store directory (kept across restarts).
        #[arg(long, default_value = ".local-data", env = "POS_DATA_DIR")]
        data_dir: PathBuf,
        /// Vendor secrets, same JSON shape as the Secrets Manager secret; default: the dev secrets.
        #[arg(long, env = "POS_SECRETS_FILE")]
        secrets: Option<PathBuf>,
        /// Currency of the Lightspeed retailer (its payloads carry none); `none` leaves it unset, so
        /// Lightspeed sales are quarantined (what a deployment without `LIGHTSPEED_CURRENCY` does).
        #[arg(long, default_value = "NZD", env = "LIGHTSPEED_CURRENCY")]
        lightspeed_currency: String,
        /// Largest webhook body accepted.
        #[arg(long, default_value_t = 256 * 1024, env = "MAX_BODY_BYTES")]
        max_body_bytes: usize,
        /// Queue visibility timeout in ms (infra/ deploys minutes; locally a failed record retries sooner).
        #[arg(long, default_value_t = 2000)]
        visibility_timeout_ms: u64,
        /// stock-sync publishes StockLow at or below this on-hand quantity.
        #[arg(long, default_value_t = 5, env = "LOW_STOCK_THRESHOLD")]
        low_stock_threshold: i64,
        /// Loyalty rules JSON (shape in shared/src/loyalty/rules.rs); default: the built-in rules.
        #[arg(long)]
        loyalty_rules: Option<PathBuf>,
        /// How often the outbox relay runs, in ms (entries pending longer than this are republished).
        #[arg(long, default_value_t = 10_000)]
        relay_interval_ms: u64,
        /// JWKS the query API trusts (a file; its issuer goes in `--jwt-issuer`); default: the
        /// development issuer's keys, which `pos-local token` signs with.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Issuer (`iss`) the query API expects; with `--jwks`, set it to that key set's issuer.
        #[arg(long, default_value = pos_shared::auth::DEV_ISSUER)]
        jwt_issuer: String,
        /// Audience (`aud`) the query API expects.
        #[arg(long, default_value = pos_shared::auth::API_AUDIENCE)]
        jwt_audience: String,
        /// Connectors file: the destinations to deliver to and their credentials (JSON, e.g.
        /// `{"commercetools": {"project_key", "client_id", "client_secret", "auth_url", "api_url"}}`);
        /// default: deliver nowhere.
        #[arg(long, env = "POS_CONNECTORS_FILE")]
        connectors: Option<PathBuf>,
    },
    /// Move a consumer queue's dead letters back to the queue (on a running server).
    Redrive {
        /// Queue name: stock-sync or loyalty-accrual.
        queue: String,
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
    },
    /// Reprocess quarantined deliveries after a mapping fix, exactly once each: every open one, or the one
    /// named by --vendor and --delivery-key. Prints one JSON line per delivery; fails if any failed.
    /// Locally it asks the running server; with --aws it runs here against the deployed table and bus
    /// (environment as the sale-capture function's: TABLE_NAME, EVENT_BUS_NAME, SECRET_ID and the
    /// mapping settings, with AWS credentials).
    Reprocess {
        /// Vendor of the one delivery to reprocess (with --delivery-key).
        #[arg(long, requires = "delivery_key")]
        vendor: Option<String>,
        /// Delivery key of the one delivery to reprocess (as `GET /_local/quarantine` shows it).
        #[arg(long, requires = "vendor")]
        delivery_key: Option<String>,
        /// Server base URL (local).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Run against AWS (DynamoDB + EventBridge) instead of a local server.
        #[arg(long)]
        aws: bool,
    },
    /// webhooks-sync's operator commands (on a running server).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Post an events/ sample (an API Gateway event file) to a running server.
    Send {
        /// The event file.
        file: PathBuf,
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Keep a Standard Webhooks sample's signed timestamp (by default it is re-signed now).
        #[arg(long)]
        keep_timestamp: bool,
    },
    /// Print a bearer token signed by the development issuer (ES256, its JWKS is
    /// shared/src/auth/dev/dev-jwks.json). For local use only.
    Token {
        /// Space-separated scopes, e.g. "sales:read stock:read loyalty:read deliveries:read".
        #[arg(
            long,
            default_value = "sales:read stock:read loyalty:read deliveries:read"
        )]
        scopes: String,
        /// Subject (`sub`).
        #[arg(long, default_value = "local-developer")]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: i64,
    },
    /// Regenerate events/ from the samples (signed with the dev secrets).
    GenEvents {
        /// Output directory.
        #[arg(long, default_value = "events")]
        out: PathBuf,
    },
    /// Load-test a running server with unique signed Standard Webhooks sales; prints a JSON report.
    Load {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Number of requests.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrent requests.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Lines per sale.
        #[arg(long, default_value_t = 10)]
        lines: usize,
        /// Also wait until stock-sync and loyalty-accrual have processed every sale (end-to-end rate).
        #[arg(long)]
        pipeline: bool,
    },
    /// Generate a realistic, seeded store day (sales, later returns and exchanges, members, several
    /// currencies, all four vendors' signed wire formats), send it to a running server (or write it as
    /// API Gateway events with --out), wait for the pipeline to go idle, and reconcile stock, points and
    /// deliveries with the generator's own model; fails on any difference.
    Simulate {
        /// Number of stores (assigned to Standard, Shopify, Lightspeed, Square in turn).
        #[arg(long, default_value_t = 8)]
        stores: usize,
        /// Sales per store on the first day.
        #[arg(long, default_value_t = 100)]
        sales_per_store: usize,
        /// Opening hours, UTC: OPEN-CLOSE.
        #[arg(long, default_value = "9-21")]
        hours: String,
        /// Days: sales on the first, returns and exchanges on the later ones (1: no returns).
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// Seed: the same seed and flags give the same deliveries.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The first day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-01-15")]
        date: chrono::NaiveDate,
        /// Currencies, one per store, drawn from this list.
        #[arg(long, default_value = "EUR,GBP,USD")]
        currencies: String,
        /// Share of sales with a loyalty member.
        #[arg(long, default_value_t = 0.4)]
        member_share: f64,
        /// Share of sales returned on a later day (some partially, some as exchanges).
        #[arg(long, default_value_t = 0.08)]
        return_share: f64,
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:3000", conflicts_with = "out")]
        url: String,
        /// Write the deliveries as API Gateway events (with manifest.json and expected.json) here
        /// instead of sending them.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Concurrent requests.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The loyalty rules the server runs with (its --loyalty-rules); default: the built-in rules.
        #[arg(long)]
        loyalty_rules: Option<PathBuf>,
        /// Seconds to wait for the pipeline to go idle after each day.
        #[arg(long, default_value_t = 600)]
        idle_timeout_s: u64,
        /// Print every store + SKU and member, not only the per-store summary.
        #[arg(long)]
        all_rows: bool,
    },
    /// Measure read latency: GET /v1/stores/{store_id}/stock/{sku} over every store + SKU pair with a
    /// stock row (seed sales first, e.g. `load --pipeline`); prints a JSON report, fails on any non-2xx.
    LoadRead {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Number of requests.
        #[arg(long, default_value_t = 5000)]
        requests: usize,
        /// Concurrent requests.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Bearer token with `stock:read`; default: one minted by the development issuer.
        #[arg(long, env = "POS_TOKEN")]
        token: Option<String>,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Re-enable a disabled webhook endpoint (once its receiver is fixed) and replay its records kept as
    /// dead with "endpoint disabled". Prints the server's report (replayed and not replayed event ids).
    Enable {
        /// The subscription id.
        subscription: String,
        /// Server base URL (local).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Run against AWS (the deliveries table, the capture table's outbox, webhooks-sync's queue)
        /// instead of a local server (environment: DELIVERIES_TABLE, TABLE_NAME, QUEUE_URL, with AWS
        /// credentials).
        #[arg(long)]
        aws: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            addr,
            data_dir,
            secrets,
            lightspeed_currency,
            max_body_bytes,
            visibility_timeout_ms,
            low_stock_threshold,
            loyalty_rules,
            relay_interval_ms,
            jwks,
            jwt_issuer,
            jwt_audience,
            connectors,
        } => {
            pos_shared::runtime::init_logging("pos-local");
            let settings = CaptureSettings {
                max_body_bytes,
                mapping: pos_shared::vendors::MappingConfig {
                    lightspeed_currency: match lightspeed_currency.as_str() {
                        "none" => None,
                        code => Some(Currency::parse(code)?),
                    },
                    ..Default::default()
                },
                ..CaptureSettings::default()
            };
            let platform = Arc::new(
                Platform::open(&LocalOptions {
                    data_dir: data_dir.clone(),
                    secrets_file: secrets.clone(),
                    settings,
                    visibility_timeout: Some(std::time::Duration::from_millis(
                        visibility_timeout_ms,
                    )),
                    low_stock_threshold,
                    loyalty_rules,
                    relay_interval: std::time::Duration::from_millis(relay_interval_ms.max(100)),
                    jwks_file: jwks,
                    jwt_issuer,
                    jwt_audience,
                    connectors_file: connectors,
                })
                .await?,
            );
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            // Tests and scripts read this line to learn the port.
            println!(
                "pos-local listening on http://{local} (data: {}, secrets: {})",
                data_dir.display(),
                secrets.as_ref().map_or_else(
                    || "built-in dev secrets".to_owned(),
                    |p| p.display().to_string()
                )
            );
            pos_local::server::serve(listener, platform, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        Command::Send {
            file,
            url,
            keep_timestamp,
        } => {
            let (status, body) = pos_local::client::send(&url, &file, keep_timestamp).await?;
            println!("{status} {body}");
        }
        Command::Reprocess {
            vendor,
            delivery_key,
            url,
            aws,
        } => {
            let one = vendor.zip(delivery_key);
            let reports = if aws {
                pos_local::client::reprocess_on_aws(one).await?
            } else {
                pos_local::client::reprocess_local(&url, one).await?
            };
            let mut failed = 0;
            for r in &reports {
                println!("{r}");
                failed += usize::from(r.get("error").is_some());
            }
            eprintln!("{} reprocessed, {failed} failed", reports.len());
            if failed > 0 {
                anyhow::bail!("{failed} deliveries could not be reprocessed; run again");
            }
        }
        Command::Webhooks {
            command:
                WebhooksCommand::Enable {
                    subscription,
                    url,
                    aws,
                },
        } => {
            let report = if aws {
                pos_local::client::webhooks_enable_on_aws(&subscription).await?
            } else {
                pos_local::client::webhooks_enable_local(&url, &subscription).await?
            };
            println!("{report}");
        }
        Command::Redrive { queue, url } => {
            let resp = reqwest::Client::new()
                .post(format!(
                    "{}/_local/queues/{queue}/redrive",
                    url.trim_end_matches('/')
                ))
                .send()
                .await?;
            let status = resp.status().as_u16();
            println!("{status} {}", resp.text().await.unwrap_or_default());
            if status != 200 {
                anyhow::bail!("redrive failed");
            }
        }
        Command::Token {
            scopes,
            subject,
            ttl_seconds,
        } => {
            let token = pos_shared::auth::dev_token(
                pos_shared::auth::DEV_ISSUER,
                pos_shared::auth::API_AUDIENCE,
                &subject,
                &scopes,
                chrono::Utc::now(),
                chrono::Duration::seconds(ttl_seconds.clamp(1, 86_400)),
            )
            .map_err(|e| anyhow::anyhow!("cannot sign the dev token: {e}"))?;
            println!("{token}");
        }
        Command::GenEvents { out } => {
            let n = pos_local::events::write_all(&out)?;
            println!("wrote {n} files under {}", out.display());
        }
        Command::Load {
            url,
            requests,
            concurrency,
            lines,
            pipeline,
        } => {
            let report =
                pos_local::client::load(&url, requests, concurrency, lines, pipeline).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Simulate {
            stores,
            sales_per_store,
            hours,
            days,
            seed,
            date,
            currencies,
            member_share,
            return_share,
            url,
            out,
            concurrency,
            loyalty_rules,
            idle_timeout_s,
            all_rows,
        } => {
            use pos_local::simulate;
            let (open_hour, close_hour) = simulate::parse_hours(&hours)?;
            let cfg = simulate::SimConfig {
                stores,
                sales_per_store,
                open_hour,
                close_hour,
                days,
                seed,
                currencies: simulate::parse_currencies(&currencies)?,
                member_share,
                return_share,
                date,
            };
            let rules = match &loyalty_rules {
                Some(path) => {
                    pos_shared::loyalty::rules::LoyaltyRules::parse(&std::fs::read_to_string(path)?)
                        .map_err(|e| anyhow::anyhow!("loyalty rules {}: {e}", path.display()))?
                }
                None => pos_shared::loyalty::rules::LoyaltyRules::default_rules(),
            };
            let started = std::time::Instant::now();
            let generated = simulate::generate(&cfg, &rules)?;
            if let Some(dir) = out {
                let n = simulate::write_out(&generated, &dir)?;
                println!("wrote {n} deliveries under {}", dir.display());
                return Ok(());
            }
            let report = simulate::run(
                &generated,
                &simulate::RunOptions {
                    url,
                    concurrency,
                    idle_timeout: std::time::Duration::from_secs(idle_timeout_s),
                    all_rows,
                    progress: true,
                },
            )
            .await?;
            print!("{report}");
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{} deliveries {:?} in {secs:.1}s ({:.0}/s end to end)",
                report.sent,
                report.statuses,
                report.sent as f64 / secs
            );
            if !report.ok() {
                anyhow::bail!("{} differences", report.differences.len());
            }
        }
        Command::LoadRead {
            url,
            requests,
            concurrency,
            token,
        } => {
            let report = pos_local::client::load_read(&url, requests, concurrency, token).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.errors > 0 {
                anyhow::bail!(
                    "{} of {} reads did not answer 2xx",
                    report.errors,
                    report.requests
                );
            }
        }
    }
    Ok(())
}
