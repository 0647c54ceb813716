//! `hail`: the one binary. `hail server` runs the engine; every other
//! subcommand is a client or a low-level tool. This file only parses flags and
//! wires the libraries together.

mod api_cmd;
mod bench_api;
mod bench_assembly;
mod bench_cmd;
mod bench_gateway;
mod bench_s3;
mod bench_scaling;
mod bench_thumbs;
mod client;
mod cluster_cmd;
mod image_cmd;
mod lb_cmd;
mod logs_cmd;
mod role_cmd;
mod runtime_cmd;
mod server_cmd;
mod service_cmd;
mod stack_cmd;
mod stack_yaml;
mod status_cmd;
mod status_tui;
mod status_view;
mod table;
mod task_cmd;
mod taskdef_cmd;
mod trigger_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hail",
    version,
    about = "Hail a container: a local-first Fargate"
)]
struct Cli {
    /// Data directory (state, images, tasks).
    #[arg(
        long,
        global = true,
        env = "HAIL_DATA_DIR",
        default_value = "/var/lib/hail"
    )]
    data_dir: PathBuf,
    #[command(flatten)]
    host: HostArgs,
    #[command(subcommand)]
    command: Command,
}

/// Host resources this instance of Hail owns; two instances on one machine
/// need different values.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// Bridge the task networks attach to.
    #[arg(long, global = true, env = "HAIL_BRIDGE", default_value = "hail0")]
    pub bridge: String,
    /// Subnet task IPs come from (the bridge takes its first address).
    #[arg(
        long,
        global = true,
        env = "HAIL_SUBNET",
        default_value = "10.217.0.0/16"
    )]
    pub subnet: ipnet::Ipv4Net,
    /// Name of the cgroup tasks live under.
    #[arg(long, global = true, env = "HAIL_CGROUP_ROOT", default_value = "hail")]
    pub cgroup_root: String,
    /// Prefix of the task network namespaces' names in /run/netns.
    #[arg(
        long,
        global = true,
        env = "HAIL_NETNS_PREFIX",
        default_value = "hail-"
    )]
    pub netns_prefix: String,
    /// OCI runtime binary.
    #[arg(long, global = true, env = "HAIL_OCI_RUNTIME", default_value = "runc")]
    pub oci_runtime: std::path::PathBuf,
}

impl HostArgs {
    pub fn runtime_config(
        &self,
        data_dir: &std::path::Path,
    ) -> hail_runtime::runtime::RuntimeConfig {
        let mut config = hail_runtime::runtime::RuntimeConfig::new(data_dir);
        config.network.bridge = self.bridge.clone();
        config.network.subnet = self.subnet;
        config.network.netns_prefix = self.netns_prefix.clone();
        config.cgroup_root = self.cgroup_root.clone();
        config.runtime_binary = self.oci_runtime.clone();
        config
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: the AWS-compatible API on one port.
    Server(server_cmd::ServerArgs),
    /// Print the shell exports that point AWS tools at `hail server`.
    Env(server_cmd::EnvArgs),
    /// Manage images: import, pull, list, remove.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Drive the container runtime directly (no server).
    #[command(subcommand)]
    Runtime(Box<runtime_cmd::RuntimeCommand>),
    /// Supervise one task, whose directory arrives on stdin (started by the
    /// runtime, not by people).
    #[command(hide = true)]
    Shim,
    /// ECS clusters on a running server.
    Cluster {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: cluster_cmd::ClusterCommand,
    },
    /// ECS task definitions on a running server.
    Taskdef {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: taskdef_cmd::TaskdefCommand,
    },
    /// ECS tasks on a running server: run, list, show, stop.
    Task {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: task_cmd::TaskCommand,
    },
    /// ECS services: list, show, scale, pause, resume.
    Service {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: service_cmd::ServiceCommand,
    },
    /// The load balancer: target groups and listeners.
    Lb {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: lb_cmd::LbCommand,
    },
    /// Roles: what tasks' credentials may do.
    Role {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: role_cmd::RoleCommand,
    },
    /// Triggers: objects landing in a bucket run tasks.
    Trigger {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: trigger_cmd::TriggerCommand,
    },
    /// Apply a stack manifest (hail.yaml): show the plan, then make the
    /// engine match it.
    Apply {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(flatten)]
        args: stack_cmd::ApplyArgs,
    },
    /// Delete everything a stack created.
    Delete {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(flatten)]
        args: stack_cmd::DeleteArgs,
    },
    /// Stacks applied with `hail apply`: list, show.
    Stack {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: stack_cmd::StackCommand,
    },
    /// A task's output, from its CloudWatch Logs stream.
    Logs {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(flatten)]
        args: logs_cmd::LogsArgs,
    },
    /// A live view of clusters, services, tasks (with their CPU and memory
    /// use) and trigger deliveries; one snapshot with --once or when
    /// stdout is not a terminal.
    #[command(visible_alias = "top")]
    Status {
        #[command(flatten)]
        api: api_cmd::ApiArgs,
        #[command(flatten)]
        args: status_cmd::StatusArgs,
    },
    /// Measure performance side by side with the peers.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
    /// Print the version of this binary.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HAIL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        // The shim builds its own single-threaded event loop: it must stay small.
        Command::Shim => {
            hail_runtime::shim::main()?;
            Ok(())
        }
        Command::Server(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(server_cmd::serve(&cli.data_dir, &cli.host, args))
        }
        Command::Env(args) => server_cmd::env(&cli.data_dir, args),
        Command::Version => {
            println!("hail {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Image(cmd) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(image_cmd::run(cmd, &cli.data_dir))
        }
        Command::Cluster { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(cluster_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Taskdef { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(taskdef_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Task { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            exit_api(rt.block_on(task_cmd::run(&cli.data_dir, api, cmd)))
        }
        Command::Service { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(service_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Lb { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(lb_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Role { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(role_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Trigger { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(trigger_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Apply { api, args } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(stack_cmd::apply(&cli.data_dir, api, args));
            exit_api(result.map(|()| 0))
        }
        Command::Delete { api, args } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(stack_cmd::delete(&cli.data_dir, api, args));
            exit_api(result.map(|()| 0))
        }
        Command::Stack { api, cmd } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(stack_cmd::run(&cli.data_dir, api, cmd));
            exit_api(result.map(|()| 0))
        }
        Command::Logs { api, args } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(logs_cmd::run(&cli.data_dir, api, args));
            exit_api(result.map(|()| 0))
        }
        Command::Status { api, args } => {
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(status_cmd::run(&cli.data_dir, api, args));
            exit_api(result.map(|()| 0))
        }
        Command::Bench(cmd) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(bench_cmd::run(cmd))
        }
        Command::Runtime(cmd) => {
            let rt = tokio::runtime::Runtime::new()?;
            let code = rt.block_on(runtime_cmd::run(
                *cmd,
                cli.host.runtime_config(&cli.data_dir),
            ))?;
            std::process::exit(code);
        }
    }
}

/// Ends an API client command the way scripts expect: its exit code, or
/// `error: <code>: <message>` on stderr and exit status 1.
fn exit_api(result: anyhow::Result<i32>) -> ! {
    use std::io::Write as _;
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    // process::exit skips destructors, stdout's buffer among them.
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Clap finds clashing flags (a subcommand's own flag named like a
    /// global one) only when that subcommand is parsed; this checks them all.
    #[test]
    fn every_subcommand_has_consistent_flags() {
        Cli::command().debug_assert();
    }

    #[test]
    fn api_flags_parse_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "hail",
            "task",
            "run",
            "web",
            "--endpoint",
            "http://127.0.0.1:9",
            "--json",
            "--subnet-id",
            "subnet-1",
            "--command",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let Command::Task { api, .. } = cli.command else {
            panic!("not a task command");
        };
        assert_eq!(api.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(api.json);
    }
}
