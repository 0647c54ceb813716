//! `hail runtime …`: the data plane driven directly, without a server. What the
//! runtime's tests and benchmarks use, and a debugging aid.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use hail_runtime::logs::{LogFollower, Stream};
use hail_runtime::runtime::{Runtime, RuntimeConfig};
use hail_runtime::spec::{ContainerSpec, NetworkMode, TaskSpec, Ulimit};
use hail_runtime::task::{StopCause, TaskPhase, TaskStatus};

#[derive(Subcommand)]
pub enum RuntimeCommand {
    /// Run a one-container task, print its output and exit with its exit code.
    Run(Box<RunArgs>),
    /// List tasks known to the runtime.
    Ps,
    /// Wait for a task to stop, print its output since the start, exit with its exit code.
    Wait { task: String },
    /// Stop a task (stop signal, then SIGKILL after the stop timeout).
    Stop {
        task: String,
        #[arg(long, default_value = "Task stopped by user")]
        reason: String,
    },
    /// Print a container's output.
    Logs {
        task: String,
        /// Container name (defaults to the task's first container).
        container: Option<String>,
    },
    /// Delete a stopped task and its logs.
    Rm { task: String },
    /// Re-adopt running tasks and collect leftovers of dead ones.
    Recover,
}

#[derive(Clone, Copy, ValueEnum)]
enum Network {
    Awsvpc,
    None,
}

#[derive(Args)]
pub struct RunArgs {
    /// Image reference in the image store.
    image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Task id (default: a new random id).
    #[arg(long)]
    id: Option<String>,
    /// Container name.
    #[arg(long, default_value = "main")]
    name: String,
    /// cpu units (1024 = one vCPU).
    #[arg(long)]
    cpu: Option<u32>,
    /// Hard memory limit in MiB.
    #[arg(long)]
    memory: Option<u64>,
    /// Soft memory limit in MiB.
    #[arg(long)]
    memory_reservation: Option<u64>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    #[arg(long)]
    entrypoint: Option<String>,
    #[arg(long)]
    workdir: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    read_only: bool,
    #[arg(long, value_enum, default_value = "awsvpc")]
    network: Network,
    /// Stop the task after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(long, default_value_t = 30.0)]
    stop_timeout: f64,
    /// pids limit.
    #[arg(long)]
    pids_limit: Option<u64>,
    /// ulimit NAME=SOFT[:HARD] (repeatable).
    #[arg(long)]
    ulimit: Vec<String>,
    /// Print the task id and return once it runs.
    #[arg(long, short = 'd')]
    detach: bool,
}

/// Exit code of the command (the task's, for run and wait).
pub async fn run(cmd: RuntimeCommand, mut config: RuntimeConfig) -> anyhow::Result<i32> {
    // A one-shot client gains nothing from warm namespaces.
    config.network.pool_size = 0;
    let runtime = Runtime::open(config).await.context("opening the runtime")?;
    match cmd {
        RuntimeCommand::Run(args) => run_task(&runtime, *args).await,
        RuntimeCommand::Ps => {
            println!("{:<34} {:<10} {:<16} CONTAINERS", "TASK", "PHASE", "IP");
            for id in runtime.task_ids()? {
                let s = runtime.status(&id).await?;
                let ip = s
                    .network
                    .as_ref()
                    .and_then(|n| n.ip)
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "-".into());
                let containers: Vec<String> = s
                    .containers
                    .iter()
                    .map(|c| match c.exit {
                        Some(e) => format!("{}(exit {})", c.name, e.code),
                        None => format!("{}({:?})", c.name, c.phase),
                    })
                    .collect();
                println!(
                    "{:<34} {:<10} {:<16} {}",
                    s.id,
                    format!("{:?}", s.phase),
                    ip,
                    containers.join(" ")
                );
            }
            Ok(0)
        }
        RuntimeCommand::Wait { task } => {
            let status = follow(&runtime, &task, None).await?;
            report(&status);
            Ok(status.exit_code().unwrap_or(1))
        }
        RuntimeCommand::Stop { task, reason } => {
            runtime.stop(&task, &reason).await?;
            let status = runtime.wait(&task).await?;
            report(&status);
            Ok(0)
        }
        RuntimeCommand::Logs { task, container } => {
            let status = runtime.status(&task).await?;
            let container = container
                .or_else(|| status.containers.first().map(|c| c.name.clone()))
                .context("task has no containers")?;
            for r in hail_runtime::logs::read_all(&runtime.log_path(&task, &container))? {
                print_record(&r.stream, &r.log);
            }
            Ok(0)
        }
        RuntimeCommand::Rm { task } => {
            runtime.remove(&task).await?;
            Ok(0)
        }
        RuntimeCommand::Recover => {
            let r = runtime.recover().await?;
            println!(
                "adopted {} task(s), stopped {} whose supervisor was gone, collected {} leftover(s)",
                r.adopted.len(),
                r.lost.len(),
                r.collected
            );
            Ok(0)
        }
    }
}

async fn run_task(runtime: &Runtime, args: RunArgs) -> anyhow::Result<i32> {
    let mut container = ContainerSpec::new(&args.name, &args.image);
    if !args.command.is_empty() {
        container.command = Some(args.command.clone());
    }
    container.entrypoint = args.entrypoint.map(|e| vec![e]);
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?}: expected KEY=VALUE");
        };
        container.environment.push((k.to_owned(), v.to_owned()));
    }
    for u in &args.ulimit {
        container.ulimits.push(parse_ulimit(u)?);
    }
    container.working_directory = args.workdir;
    container.user = args.user;
    container.cpu_units = args.cpu;
    container.memory_mib = args.memory;
    container.memory_reservation_mib = args.memory_reservation;
    container.readonly_root_filesystem = args.read_only;
    container.pids_limit = args.pids_limit;
    container.stop_timeout = Duration::from_secs_f64(args.stop_timeout);
    let spec = TaskSpec {
        id: args.id.unwrap_or_else(hail_model::ids::new_task_id),
        containers: vec![container],
        cpu_units: None,
        memory_mib: None,
        network: match args.network {
            Network::Awsvpc => NetworkMode::Awsvpc,
            Network::None => NetworkMode::None,
        },
        hostname: None,
        max_runtime: args.timeout.map(Duration::from_secs_f64),
        volumes: Vec::new(),
    };
    let started = runtime.start_task(&spec).await?;
    if args.detach {
        println!("{}", spec.id);
        return Ok(if started.phase == TaskPhase::Running {
            0
        } else {
            1
        });
    }
    let status = follow(runtime, &spec.id, Some(&args.name)).await?;
    let ended_on_its_own = matches!(
        status.stop,
        Some(StopCause::EssentialContainerExited { .. } | StopCause::AllContainersExited)
    );
    if !ended_on_its_own
        || status
            .containers
            .iter()
            .any(|c| c.exit.is_none() || c.reason.is_some())
    {
        report(&status);
    }
    Ok(status.exit_code().unwrap_or(125))
}

/// Prints a container's output as it arrives until the task stops.
async fn follow(
    runtime: &Runtime,
    task: &str,
    container: Option<&str>,
) -> anyhow::Result<TaskStatus> {
    let status = runtime.status(task).await?;
    let name = container
        .map(str::to_owned)
        .or_else(|| status.containers.first().map(|c| c.name.clone()))
        .context("task has no containers")?;
    let mut follower = LogFollower::new(&runtime.log_path(task, &name));
    let wait = runtime.wait(task);
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let status = loop {
        tokio::select! {
            status = &mut wait => break status?,
            _ = tick.tick() => {
                for r in follower.poll()? {
                    print_record(&r.stream, &r.log);
                }
            }
        }
    };
    for r in follower.poll()? {
        print_record(&r.stream, &r.log);
    }
    Ok(status)
}

fn print_record(stream: &Stream, line: &str) {
    match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        Stream::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

fn report(status: &TaskStatus) {
    if let Some(stop) = &status.stop {
        eprintln!("task {}: {}", status.id, stop.describe());
    }
    for c in &status.containers {
        match (&c.exit, &c.reason) {
            (Some(e), reason) => eprintln!(
                "  {}: exit {}{}{}",
                c.name,
                e.code,
                if e.oom_killed { " (OOM killed)" } else { "" },
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            (None, Some(reason)) => eprintln!("  {}: {reason}", c.name),
            (None, None) => {}
        }
    }
}

fn parse_ulimit(s: &str) -> anyhow::Result<Ulimit> {
    let (name, limits) = s
        .split_once('=')
        .with_context(|| format!("--ulimit {s:?}: expected NAME=SOFT[:HARD]"))?;
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (soft.parse()?, hard.parse()?),
        None => {
            let v = limits.parse()?;
            (v, v)
        }
    };
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}
