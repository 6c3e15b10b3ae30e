use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::Reporter;
use kube::{Client, CustomResourceExt};
use lake_operator::controller::{self, generate_password, generate_token, Context};
use lake_operator::crd::LakeCluster;
use lake_operator::http::{self, Health};
use lake_operator::leader::{LeaderElector, LeaseConfig};
use lake_operator::metrics::Metrics;
use lake_operator::permissions::{self, Scope};
use lake_operator::{resources, Error, Result, MANAGER};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "lake_operator",
    version,
    about = "Kubernetes operator for pg_lake LakeCluster resources."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the LakeCluster CustomResourceDefinition as YAML.
    Crd,
    /// Print the ClusterRole the operator needs, as YAML.
    Rbac,
    /// Print every object the operator would create for a LakeCluster file, without a cluster.
    Render {
        /// A YAML file holding one LakeCluster.
        file: PathBuf,
        /// Namespace for a LakeCluster whose metadata names none.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// Run the controller.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch (repeat, or comma-separate); all namespaces when omitted.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of the /metrics and /healthz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "lake-operator-leader")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal; the holder renews every
    /// 2/15 of it and stops leading 2/3 of it after its last renewal.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    lease_seconds: u64,
    /// Seconds between full applies of each LakeCluster's objects, which revert
    /// edits made by hand; in between, objects whose applied hash matches are only read.
    #[arg(long, env = "FULL_APPLY_SECONDS", default_value_t = controller::FULL_APPLY_EVERY.as_secs(),
          value_parser = clap::value_parser!(u64).range(10..))]
    full_apply_seconds: u64,
}

impl RunArgs {
    /// The namespaces to watch; none means all. The chart sets `WATCH_NAMESPACES`
    /// to an empty string for "all".
    fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect()
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => print_yaml(&LakeCluster::crd()),
        Command::Rbac => print_rbac(),
        Command::Render { file, namespace } => render(&file, &namespace),
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)
            .and_then(|rt| rt.block_on(run(args))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lake_operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_yaml<T: serde::Serialize>(value: &T) -> Result<()> {
    print!("{}", serde_yaml::to_string(value).map_err(Error::Yaml)?);
    Ok(())
}

/// The ClusterRole for watched namespaces and the Role for the operator's own.
fn print_rbac() -> Result<()> {
    let metadata = ObjectMeta {
        name: Some(MANAGER.into()),
        ..Default::default()
    };
    let cluster_role = ClusterRole {
        metadata: metadata.clone(),
        rules: Some(permissions::policy_rules(Scope::Watched)),
        ..Default::default()
    };
    let role = Role {
        metadata,
        rules: Some(permissions::policy_rules(Scope::Own)),
    };
    println!("---");
    print_yaml(&cluster_role)?;
    println!("---");
    print_yaml(&role)
}

/// Reads a LakeCluster, checks it against the CRD's CEL rules as the API server
/// would, and prints what the operator would create for it.
fn render(file: &Path, namespace: &str) -> Result<()> {
    let path = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let mut lc: LakeCluster = serde_yaml::from_str(&text).map_err(|source| Error::Parse {
        path: path.clone(),
        source,
    })?;
    if lc.metadata.namespace.is_none() {
        lc.metadata.namespace = Some(namespace.into());
    }
    lc.validate_cel().map_err(|errors| {
        let messages: Vec<String> = errors.into_vec().iter().map(ToString::to_string).collect();
        Error::InvalidSpec(messages.join("; "))
    })?;
    let mut out = String::new();
    for object in resources::all_objects(&lc, &generate_password()?, &generate_token()?)? {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).map_err(Error::Yaml)?);
    }
    print!("{out}");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
fn on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutting down");
        shutdown.cancel();
    });
}

async fn run(args: RunArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());

    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let health = Arc::new(Health {
        registry,
        leading: false.into(),
    });
    let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
        .await
        .map_err(|source| Error::Serve {
            addr: args.metrics_addr.clone(),
            source,
        })?;
    info!(addr = %args.metrics_addr, "serving /metrics and /healthz");
    let server = tokio::spawn(http::serve(listener, health.clone(), shutdown.clone()));

    let namespaces = args.watched_namespaces();
    let client = Client::try_default().await?;
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{MANAGER}-{}", std::process::id()));
    let elector = LeaderElector::new(
        client.clone(),
        LeaseConfig::new(
            args.lease_namespace,
            args.lease_name,
            identity.clone(),
            Duration::from_secs(args.lease_seconds),
        ),
    );
    let mut outcome = Ok(());
    if elector.acquire(&shutdown).await {
        health.leading.store(true, Ordering::Relaxed);
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity),
        };
        let ctx = Arc::new(Context::new(
            client,
            metrics,
            reporter,
            Duration::from_secs(args.full_apply_seconds),
        ));
        let controllers = async {
            controller::run(ctx, namespaces, shutdown.clone()).await;
            shutdown.cancel();
        };
        (outcome, ()) = tokio::join!(elector.keep(&shutdown), controllers);
        health.leading.store(false, Ordering::Relaxed);
        if let Err(e) = elector.release().await {
            error!(error = %e, "could not release the leader lease");
        }
    }
    shutdown.cancel();
    let served = server.await.unwrap_or(Ok(()));
    outcome.and(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => args,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn watched_namespaces_come_from_flags_or_the_charts_variable() {
        // The only test that touches the environment in this binary.
        std::env::set_var("WATCH_NAMESPACES", "");
        let all = run_args(&["lake_operator", "run"]).watched_namespaces();
        assert!(all.is_empty(), "empty means all namespaces: {all:?}");
        std::env::set_var("WATCH_NAMESPACES", "team-a,team-b");
        assert_eq!(
            run_args(&["lake_operator", "run"]).watched_namespaces(),
            ["team-a", "team-b"]
        );
        std::env::remove_var("WATCH_NAMESPACES");
        let args = run_args(&[
            "lake_operator",
            "run",
            "--namespace",
            "x",
            "--namespace",
            "y",
        ]);
        assert_eq!(args.watched_namespaces(), ["x", "y"]);
    }

    #[test]
    fn full_apply_interval_defaults_to_five_minutes() {
        let args = run_args(&["lake_operator", "run"]);
        assert_eq!(args.full_apply_seconds, 300);
        let args = run_args(&["lake_operator", "run", "--full-apply-seconds", "60"]);
        assert_eq!(args.full_apply_seconds, 60);
        assert!(
            Cli::try_parse_from(["lake_operator", "run", "--full-apply-seconds", "0"]).is_err()
        );
    }
}
