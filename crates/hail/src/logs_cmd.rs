//! `hail logs TASK [-f]`, and the log following `hail task run --follow`
//! shares: a container's output read back from its CloudWatch Logs stream.

use std::path::Path;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::{json, Value};

use crate::api_cmd::{
    arn_tail, describe_task, ecs, items, logs, poll_task, resolve_task, text, ApiArgs,
    POLL_INTERVAL,
};
use crate::client::{Client, ClientError};

#[derive(Args)]
pub struct LogsArgs {
    /// Task id or ARN.
    task: String,
    /// Cluster name or ARN (default: `default`).
    #[arg(long)]
    cluster: Option<String>,
    /// The container (default: the first that logs with awslogs).
    #[arg(long)]
    container: Option<String>,
    /// Keep printing new lines until the task stops.
    #[arg(short, long)]
    follow: bool,
}

/// Where a container's output goes: its awslogs group and stream prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub group: String,
    prefix: Option<String>,
    container: String,
}

impl LogTarget {
    /// The awslogs destination of `container` in the task definition `def`.
    pub fn of(def: &Value, container: &str) -> anyhow::Result<LogTarget> {
        let c = items(&def["containerDefinitions"])
            .find(|c| c["name"] == container)
            .with_context(|| format!("the task definition has no container {container}"))?;
        let log = &c["logConfiguration"];
        if log["logDriver"] != "awslogs" {
            bail!(
                "container {container} does not log with awslogs, so its output is not in \
                 CloudWatch Logs; `hail runtime logs TASK` reads it on the server's machine"
            );
        }
        let group = log["options"]["awslogs-group"]
            .as_str()
            .with_context(|| format!("container {container}: awslogs-group is missing"))?;
        Ok(LogTarget {
            group: group.to_owned(),
            prefix: log["options"]["awslogs-stream-prefix"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            container: container.to_owned(),
        })
    }

    /// The stream of one task, named as ECS names it:
    /// `prefix/container/task-id`, or `container/task-id` without a prefix.
    pub fn stream(&self, task_id: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{}/{task_id}", self.container),
            None => format!("{}/{task_id}", self.container),
        }
    }
}

pub async fn run(data_dir: &Path, api: ApiArgs, args: LogsArgs) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    let cluster = args.cluster.as_deref();
    let task = resolve_task(&client, &args.task, cluster).await?;
    let task = describe_task(&client, &task, cluster).await?;
    let def = ecs(
        &client,
        "DescribeTaskDefinition",
        json!({"taskDefinition": task["taskDefinitionArn"]}),
    )
    .await?["taskDefinition"]
        .clone();
    let container = match args.container {
        Some(c) => c,
        None => items(&def["containerDefinitions"])
            .find(|c| c["logConfiguration"]["logDriver"] == "awslogs")
            .map(|c| text(&c["name"]))
            .context("no container of this task logs with awslogs")?,
    };
    let arn = text(&task["taskArn"]);
    let target = LogTarget::of(&def, &container)?;
    let stream = target.stream(arn_tail(&arn));
    let output = if api.json {
        Output::Json
    } else {
        Output::Stdout
    };
    if args.follow {
        follow(&client, &arn, cluster, &target.group, &stream, output).await?;
        return Ok(());
    }
    let mut reader = StreamReader::new(&target.group, &stream, output);
    reader.print_available(&client).await?;
    Ok(())
}

/// Where a followed stream's events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Each message as one line on stdout.
    Stdout,
    /// Each message as one line on stderr, so that stdout holds only the
    /// JSON a command prints at its end (`hail task run --follow --json`).
    Stderr,
    /// Each event as GetLogEvents returns it, one JSON object a line.
    Json,
}

/// Reads a stream forward with `nextForwardToken`, printing each event.
struct StreamReader<'a> {
    group: &'a str,
    stream: &'a str,
    token: Option<String>,
    output: Output,
}

impl<'a> StreamReader<'a> {
    fn new(group: &'a str, stream: &'a str, output: Output) -> Self {
        StreamReader {
            group,
            stream,
            token: None,
            output,
        }
    }

    /// The next GetLogEvents call: oldest first, from where the last one
    /// ended.
    fn request(&self) -> Value {
        let mut body = json!({
            "logGroupName": self.group,
            "logStreamName": self.stream,
            "startFromHead": true,
        });
        if let Some(t) = &self.token {
            body["nextToken"] = t.clone().into();
        }
        body
    }

    /// Prints one page's events; whether the stream's end is reached.
    fn take(&mut self, page: &Value) -> bool {
        for e in items(&page["events"]) {
            match self.output {
                Output::Stdout => println!("{}", e["message"].as_str().unwrap_or("")),
                Output::Stderr => eprintln!("{}", e["message"].as_str().unwrap_or("")),
                Output::Json => println!("{e}"),
            }
        }
        let next = page["nextForwardToken"].as_str().map(str::to_owned);
        if next.is_none() || next == self.token {
            return true;
        }
        self.token = next;
        false
    }

    /// Prints every event written since the last call. GetLogEvents answers
    /// the token it was given once the end is reached, which is how the end
    /// is recognised.
    async fn print_available(&mut self, client: &Client) -> Result<(), ClientError> {
        loop {
            let page = logs(client, "GetLogEvents", self.request()).await?;
            if self.take(&page) {
                return Ok(());
            }
        }
    }
}

/// Prints the stream's events as they arrive until the task has stopped and
/// everything it wrote is printed; returns the stopped task.
pub async fn follow(
    client: &Client,
    arn: &str,
    cluster: Option<&str>,
    group: &str,
    stream: &str,
    output: Output,
) -> anyhow::Result<Value> {
    let mut reader = StreamReader::new(group, stream, output);
    loop {
        // Read the task first: the server ships a task's output before it
        // records the task STOPPED, so once it reads STOPPED, the read after
        // that is the last one needed.
        let task = poll_task(client, arn, cluster).await?;
        let stopped = task["lastStatus"] == "STOPPED";
        match reader.print_available(client).await {
            Ok(()) => {}
            // The stream appears when the task's container starts; a task
            // that stopped before that (it failed to start) has none.
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            // A server restarting under a follow: the next DescribeTasks
            // waits for it (within its grace), and the reader resumes from
            // its token, so no line is lost or printed twice. Once the task
            // has stopped there is no later read, so the failure is reported.
            Err(ClientError::Transport(_)) if !stopped => {}
            Err(e) => return Err(e.into()),
        }
        if stopped {
            return Ok(task);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_streams_are_named_as_ecs_names_them() {
        let def = json!({"containerDefinitions": [{
            "name": "app",
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/app", "awslogs-stream-prefix": "ecs"}}
        }, {
            "name": "worker",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/w"}}
        }, {"name": "side"}]});
        let app = LogTarget::of(&def, "app").unwrap();
        assert_eq!(app.group, "/ecs/app");
        assert_eq!(app.stream("abc"), "ecs/app/abc");
        assert_eq!(
            LogTarget::of(&def, "worker").unwrap().stream("abc"),
            "worker/abc"
        );
        let err = LogTarget::of(&def, "side").unwrap_err().to_string();
        assert!(err.contains("does not log with awslogs"), "{err}");
        assert!(LogTarget::of(&def, "nope").is_err());
    }

    #[test]
    fn reads_go_forward_from_the_head_until_the_token_repeats() {
        let mut reader = StreamReader::new("/ecs/app", "ecs/app/abc", Output::Json);
        assert_eq!(
            reader.request(),
            json!({"logGroupName": "/ecs/app", "logStreamName": "ecs/app/abc",
                   "startFromHead": true})
        );
        let first = json!({"events": [], "nextForwardToken": "f/1", "nextBackwardToken": "b/0"});
        assert!(!reader.take(&first));
        assert_eq!(reader.request()["nextToken"], "f/1");
        // The same token back: nothing newer yet, and the next poll asks
        // from the same place.
        assert!(reader.take(&first));
        assert_eq!(reader.request()["nextToken"], "f/1");
        assert!(!reader.take(&json!({"events": [], "nextForwardToken": "f/2"})));
        assert_eq!(reader.request()["nextToken"], "f/2");
        // An answer without a token ends the read without losing the place.
        assert!(reader.take(&json!({"events": []})));
        assert_eq!(reader.request()["nextToken"], "f/2");
    }
}
