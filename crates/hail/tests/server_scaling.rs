//! Scaling through `hail server` with real containers, the real `aws` CLI
//! and load through Hail's own load balancer: Application Auto Scaling
//! target tracking on `ALBRequestCountPerTarget` scales the service out
//! under load and back in once the load is gone, without flapping; a
//! scale-from-zero target group puts its idle service at zero tasks, and
//! the next request starts one and is answered by it.
//!
//! Task counts are sampled from DescribeServices (through `hail service
//! show`, which starts in milliseconds, unlike the `aws` CLI) twice a
//! second, and every failure message shows the samples.

mod server_support;

use server_support::images;
#[path = "server_support/services.rs"]
mod services;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::HAIL;
use services::{steady, workshop_service, Load, Stack, CLUSTER, SERVICE};

const RESOURCE: &str = "service/bean-counter-cluster/bean-counter-service";
const DIMENSION: &str = "ecs:service:DesiredCount";
const POLICY: &str = "requests-per-target";

/// One reading of the service's counts, `at` seconds after sampling began.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    desired: u64,
    running: u64,
    pending: u64,
}

/// Reads the service's counts twice a second on a thread of its own.
struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(stack: &Stack) -> Sampler {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (data_dir, endpoint) = (
            stack.data_dir.clone(),
            stack.env["AWS_ENDPOINT_URL"].clone(),
        );
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(s) = read_counts(&data_dir, &endpoint) {
                        samples.lock().unwrap().push(Sample {
                            at: started.elapsed().as_secs_f64(),
                            ..s
                        });
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        };
        Sampler {
            started,
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// The samples as `t=…s desired/running/pending` lines.
    fn report(&self) -> String {
        let mut out = String::from("samples (seconds: desired/running/pending):\n");
        for s in self.samples() {
            let _ = writeln!(
                out,
                "  {:7.1}s  {}/{}/{}",
                s.at, s.desired, s.running, s.pending
            );
        }
        out
    }

    /// Waits until a sample taken after `after` satisfies `done`.
    fn until(
        &self,
        stack: &Stack,
        what: &str,
        after: f64,
        secs: u64,
        done: impl Fn(&Sample) -> bool,
    ) -> Sample {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self
                .samples()
                .into_iter()
                .find(|s| s.at >= after && done(s))
            {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "never {what} within {secs} s\n{}\nservice: {:#}",
                    self.report(),
                    stack.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_counts(data_dir: &PathBuf, endpoint: &str) -> Option<Sample> {
    let out = std::process::Command::new(HAIL)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["service", "show", SERVICE, "--cluster", CLUSTER, "--json"])
        .args(["--endpoint", endpoint])
        .output()
        .ok()?;
    let s: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Sample {
        at: 0.0,
        desired: s["desiredCount"].as_u64()?,
        running: s["runningCount"].as_u64()?,
        pending: s["pendingCount"].as_u64()?,
    })
}

/// The `ALBRequestCountPerTarget` resource label of a target group ARN
/// (Hail has one load balancer; its name and id in the label are free).
fn resource_label(target_group_arn: &str) -> String {
    let (_, group) = target_group_arn
        .split_once(":targetgroup/")
        .expect("a target group ARN");
    format!("app/hail/0123456789abcdef/targetgroup/{group}")
}

fn activities(stack: &Stack) -> Vec<Value> {
    stack.aws(&[
        "application-autoscaling",
        "describe-scaling-activities",
        "--service-namespace",
        "ecs",
        "--resource-id",
        RESOURCE,
        "--scalable-dimension",
        DIMENSION,
    ])["ScalingActivities"]
        .as_array()
        .unwrap()
        .clone()
}

/// GET with curl (a held request may wait minutes on a loaded machine):
/// the status code, the trimmed body and curl's stderr.
fn get(url: &str) -> (String, String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "150",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg(url)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = answer.rsplit_once('\n').unwrap_or(("", ""));
    (
        code.to_owned(),
        body.trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn running_arns(stack: &Stack) -> Vec<String> {
    stack
        .running_tasks()
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn target_tracking_scales_out_under_load_and_back_in_after_it() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.register("scale", None);
    let tg = stack.target_group_alone();
    let url = stack.listener("bean-counter-tg");
    let mut input = workshop_service(1, &tg);
    input["deploymentConfiguration"] = json!({"maximumPercent": 200, "minimumHealthyPercent": 100});
    let file = stack.file("service.json", &input);
    stack.aws(&["ecs", "create-service", "--cli-input-json", &file]);
    stack.until("steady at 1", 90, steady(1));

    stack.aws(&[
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        DIMENSION,
        "--resource-id",
        RESOURCE,
        "--min-capacity",
        "1",
        "--max-capacity",
        "4",
    ]);
    // 600 requests a minute per target is 10 a second: the load below
    // (25 a second) is two and a half targets' worth.
    let policy = stack.file(
        "policy.json",
        &json!({
            "TargetValue": 600.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "ALBRequestCountPerTarget",
                "ResourceLabel": resource_label(&tg),
            },
            "ScaleOutCooldown": 5,
            "ScaleInCooldown": 5,
        }),
    );
    let put = stack.aws(&[
        "application-autoscaling",
        "put-scaling-policy",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        DIMENSION,
        "--resource-id",
        RESOURCE,
        "--policy-name",
        POLICY,
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        &policy,
    ]);
    let alarms: Vec<String> = put["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_owned())
        .collect();
    let high = alarms.iter().find(|a| a.contains("-AlarmHigh-")).unwrap();
    let low = alarms.iter().find(|a| a.contains("-AlarmLow-")).unwrap();

    let sampler = Sampler::start(&stack);
    sampler.until(&stack, "sampled at 1 task", 0.0, 30, |s| s.desired == 1);
    let load_started = sampler.now();
    let load = Load::start_at(&stack, &url, "scale-out", 25);
    let out = sampler.until(&stack, "scaled out", load_started, 60, |s| s.desired > 1);
    sampler.until(&stack, "ran the added tasks", out.at, 120, |s| {
        s.running > 1 && s.running == s.desired && s.pending == 0
    });
    // Let the added tasks serve for a while before the load stops.
    std::thread::sleep(Duration::from_secs(5));
    let load_stopped = sampler.now();
    let served = load.finish();
    let peak = sampler.samples().iter().map(|s| s.desired).max().unwrap();
    assert!(
        (2..=4).contains(&peak),
        "peak {peak} outside 2..=4\n{}",
        sampler.report()
    );
    assert!(
        served["ok"].as_u64().unwrap() > 100,
        "{served}\n{}",
        sampler.report()
    );
    assert_eq!(served["failed"], 0, "{served}\n{}", sampler.report());

    let acts = activities(&stack);
    let cause = format!("monitor alarm {high} in state ALARM triggered policy {POLICY}");
    let scaled_out = acts
        .iter()
        .find(|a| a["Cause"] == cause.as_str())
        .unwrap_or_else(|| panic!("no activity caused by {high}: {acts:#?}"));
    assert_eq!(scaled_out["StatusCode"], "Successful", "{scaled_out:#}");
    assert!(
        scaled_out["Description"]
            .as_str()
            .unwrap()
            .starts_with("Setting desired count to "),
        "{scaled_out:#}"
    );

    // Idle: back to the minimum after a minute below target, and stays there.
    let back = sampler.until(&stack, "scaled back in to 1", load_stopped, 240, |s| {
        s.desired == 1 && s.running == 1 && s.pending == 0
    });
    std::thread::sleep(Duration::from_secs(15));
    let samples = sampler.samples();
    let idle: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= load_stopped + 5.0)
        .collect();
    assert!(
        idle.windows(2).all(|w| w[1].desired <= w[0].desired),
        "the desired count went up again while idle\n{}",
        sampler.report()
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.at >= back.at)
            .all(|s| s.desired == 1),
        "flapped after scaling in\n{}",
        sampler.report()
    );
    let acts = activities(&stack);
    let scaled_in = acts
        .iter()
        .find(|a| {
            a["Cause"]
                .as_str()
                .is_some_and(|c| c.starts_with(&format!("monitor alarm {low} in state ALARM")))
        })
        .unwrap_or_else(|| panic!("no activity caused by {low}: {acts:#?}"));
    assert_eq!(scaled_in["StatusCode"], "Successful", "{scaled_in:#}");
    eprintln!("{}", sampler.report());
}

#[test]
fn a_scale_from_zero_service_goes_to_zero_when_idle_and_the_next_request_starts_a_task() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.register("cold", None);
    let tg = stack.target_group_with(&[
        "--scale-from-zero",
        "--idle-seconds",
        "10",
        "--activation-timeout",
        "120",
    ]);
    let url = stack.listener("bean-counter-tg");
    let mut input = workshop_service(1, &tg);
    input["deploymentConfiguration"] = json!({"maximumPercent": 200, "minimumHealthyPercent": 100});
    let file = stack.file("service.json", &input);
    stack.aws(&["ecs", "create-service", "--cli-input-json", &file]);
    // A first request, held until the first task is healthy, so the group's
    // idle time starts once the service serves (not while it starts).
    let (code, body, _) = get(&url);
    assert_eq!((code.as_str(), body.as_str()), ("200", "cold"));
    // Application Auto Scaling's view of it: it may be at zero.
    stack.aws(&[
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        DIMENSION,
        "--resource-id",
        RESOURCE,
        "--min-capacity",
        "0",
        "--max-capacity",
        "2",
    ]);
    let before = running_arns(&stack);
    assert_eq!(before.len(), 1, "{before:?}");

    let sampler = Sampler::start(&stack);
    // No requests: to zero after its idle seconds (checked every 5 s).
    let zero = sampler.until(&stack, "scaled to zero", 0.0, 90, |s| {
        s.desired == 0 && s.running == 0 && s.pending == 0
    });
    // The task stops after the group's deregistration delay (2 s).
    stack.until_no_running_tasks(30);

    // One request: held while a task starts, answered by that task.
    let targets_before = stack.hail(&["lb", "targets", "bean-counter-tg", "--json"]);
    let sent = sampler.now();
    let started = Instant::now();
    let (code, body, err) = get(&url);
    let took = started.elapsed();
    assert_eq!(
        code,
        "200",
        "first request after scaling to zero: {body:?} {err}\n{}\nservice: {:#}",
        sampler.report(),
        stack.describe()
    );
    assert_eq!(body, "cold");
    eprintln!("the first request took {took:?}");

    let after = running_arns(&stack);
    assert_eq!(
        after.len(),
        1,
        "{after:?}\ntargets before the request: {targets_before}\n{}\nservice: {:#}",
        sampler.report(),
        stack.describe()
    );
    assert!(
        !before.contains(&after[0]),
        "answered by the task from before the scale to zero\n{}",
        sampler.report()
    );
    sampler.until(&stack, "sampled at one task", sent, 30, |s| {
        s.desired == 1 && s.running == 1
    });
    let samples = sampler.samples();
    assert!(
        samples
            .iter()
            .filter(|s| s.at >= zero.at && s.at < sent)
            .all(|s| s.desired == 0 && s.running == 0),
        "a task ran before the request\n{}",
        sampler.report()
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.at >= sent)
            .all(|s| s.running <= 1 && s.desired <= 1),
        "more than one task for one request\n{}",
        sampler.report()
    );
    let words = services::messages(&stack.describe());
    assert!(
        words
            .iter()
            .any(|m| m.contains("was scaled to zero after 10 seconds without requests")),
        "{words:?}"
    );
    assert!(
        words
            .iter()
            .any(|m| m.contains("was scaled from zero to 1 by a request")),
        "{words:?}"
    );
    eprintln!("{}", sampler.report());
}
