//! Fleet commands: enterprises, devices and deployments.

use std::collections::BTreeMap;

use clap::Subcommand;

use algobay_sdk::fleet::{Action, Deployment, Device, RolloutPolicy};

use super::registry::{connect, print_json, rt, Connection};
use super::{Global, Usage};

#[derive(Debug, Subcommand)]
pub enum EnterpriseCommand {
    /// Register an enterprise: a tenant with its own devices and deployments (operator).
    #[command(
        after_help = "Example:\n  algobay enterprise create acme-logistics --industry logistics --display-name 'Acme Logistics'"
    )]
    Create {
        name: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// An industry it works in (repeatable).
        #[arg(long)]
        industry: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Make a one-time enrollment token for a device; printed once.
    #[command(
        after_help = "Example:\n  algobay device token --label site=hangzhou --label line=3\n  \
(then put it in the device's agent.toml as enrollment_token)"
    )]
    Token {
        /// The enterprise (an enterprise token acts for its own).
        #[arg(long, default_value = "")]
        enterprise: String,
        /// `KEY=VALUE` the device gets (repeatable).
        #[arg(long)]
        label: Vec<String>,
        /// Seconds the token stays usable (0: a day).
        #[arg(long, default_value_t = 0)]
        ttl: i64,
    },
    /// List the enterprise's devices with what they run.
    #[command(after_help = "Examples:\n  algobay device list\n  algobay device list --json")]
    List {
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long)]
        json: bool,
    },
    /// Serving figures per device and kit: requests, errors, latency, time per step.
    #[command(
        after_help = "Examples:\n  algobay device telemetry\n  algobay device telemetry --device dev-3f9c2a1b7d4e --json"
    )]
    Telemetry {
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long, default_value = "")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Recent sampled request traces (newest first): each request with the time of each step.
    #[command(
        after_help = "Devices trace a share of requests (`trace_sample_ratio` in the agent's config) and\n\
every request whose caller sent a sampled W3C `traceparent`.\n\n\
Examples:\n  algobay device traces --kit algobay/ocr-ppocrv4@1.0.0\n  \
algobay device traces --trace 4bf92f3577b34da6a3ce929d0e0e4736 --json"
    )]
    Traces {
        /// The enterprise (for an operator; an enterprise's token reads its own).
        #[arg(long, default_value = "")]
        enterprise: String,
        /// Only this device.
        #[arg(long, default_value = "")]
        device: String,
        /// Only this kit (`team/name@version` or digest).
        #[arg(long, default_value = "")]
        kit: String,
        /// Only this trace id (32 hex digits).
        #[arg(long = "trace", default_value = "")]
        trace_id: String,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Hard examples the devices kept (inputs downloadable by digest), oldest first.
    #[command(
        after_help = "Examples:\n  algobay device samples --kit algobay/ocr-ppocrv4@1.0.0\n  algobay device samples --json"
    )]
    Samples {
        #[arg(long, default_value = "")]
        enterprise: String,
        /// Only this kit (`team/name@version` or digest).
        #[arg(long, default_value = "")]
        kit: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Cut a device off: its certificate is refused from now on.
    #[command(after_help = "Example:\n  algobay device revoke dev-3f9c2a1b7d4e")]
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Put a kit on the devices whose labels match: canaries first, then the rest.
    #[command(
        after_help = "Example:\n  algobay deploy create algobay/ocr-ppocrv4@1.0.0 --selector site=hangzhou \\\n    \
--canary 0.1 --soak 600 --max-error-rate 0.01 --max-p99-ms 800"
    )]
    Create {
        /// `team/name@version` of a kit, or its digest.
        kit: String,
        #[arg(long, default_value = "")]
        enterprise: String,
        /// `KEY=VALUE` every targeted device must have (repeatable; none: all devices).
        #[arg(long)]
        selector: Vec<String>,
        /// Share of the targeted devices that get it first.
        #[arg(long, default_value_t = 0.1)]
        canary: f64,
        /// Seconds every canary must run it within bounds before the rest get it.
        #[arg(long, default_value_t = 300)]
        soak: u32,
        /// Roll back when a device's error rate goes above this (0: no bound).
        #[arg(long, default_value_t = 0.0)]
        max_error_rate: f64,
        /// Roll back when a device's p99 latency goes above this many ms (0: no bound).
        #[arg(long, default_value_t = 0.0)]
        max_p99_ms: f64,
        /// Wait for `deploy promote` when the gate passes.
        #[arg(long)]
        manual_promote: bool,
        /// Keep no hard examples from these devices.
        #[arg(long)]
        no_samples: bool,
        #[arg(long)]
        json: bool,
    },
    /// A deployment and every device it targets.
    #[command(after_help = "Example:\n  algobay deploy status dep-000004-a1b2c3 --json")]
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The enterprise's deployments, newest first.
    #[command(after_help = "Example:\n  algobay deploy list")]
    List {
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long)]
        json: bool,
    },
    /// Send it to every targeted device now.
    #[command(after_help = "Example:\n  algobay deploy promote dep-000004-a1b2c3")]
    Promote {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop the rollout where it is.
    #[command(after_help = "Example:\n  algobay deploy pause dep-000004-a1b2c3")]
    Pause {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take it back: its devices return to what they ran before.
    #[command(
        after_help = "Example:\n  algobay deploy rollback dep-000004-a1b2c3 --reason 'misreads on line 3'"
    )]
    Rollback {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn labels(field: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Usage(format!("--{field} `{s}`: expected KEY=VALUE")).into())
        })
        .collect()
}

fn ago(unix: i64) -> String {
    if unix == 0 {
        return "never".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{}s ago", (now - unix).max(0))
}

fn print_devices(devices: &[Device]) {
    for d in devices {
        let s = &d.state;
        let labels: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{}  {:<16} {:<10} {:<32} seen {}{}{}",
            d.id,
            d.name,
            if d.revoked { "revoked" } else { &s.phase },
            if s.active_reference.is_empty() {
                "-"
            } else {
                &s.active_reference
            },
            ago(d.last_seen_unix),
            if labels.is_empty() {
                String::new()
            } else {
                format!("  [{}]", labels.join(" "))
            },
            if s.message.is_empty() {
                String::new()
            } else {
                format!("\n    {}", s.message)
            }
        );
    }
}

fn print_deployment(d: &Deployment) {
    println!("{}  {}  {}  {}", d.id, d.kit_reference, d.state, d.reason);
}

pub fn enterprise(g: &Global, c: &Connection, cmd: EnterpriseCommand) -> anyhow::Result<()> {
    let EnterpriseCommand::Create {
        name,
        display_name,
        industry,
    } = cmd;
    rt()?.block_on(async {
        connect(g, c)
            .await?
            .create_enterprise(&name, &display_name, industry)
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!("enterprise {name} created");
    Ok(())
}

pub fn device(g: &Global, c: &Connection, cmd: DeviceCommand) -> anyhow::Result<()> {
    rt()?.block_on(async {
        let client = connect(g, c).await?;
        match cmd {
            DeviceCommand::Token {
                enterprise,
                label,
                ttl,
            } => {
                let (id, token) = client
                    .create_enrollment_token(&enterprise, labels("label", &label)?, ttl)
                    .await?;
                eprintln!("enrollment token {id} (shown once, usable once):");
                println!("{token}");
            }
            DeviceCommand::List { enterprise, json } => {
                let devices = client.list_devices(&enterprise).await?;
                if json {
                    return print_json(&devices);
                }
                print_devices(&devices);
                println!("{} device(s)", devices.len());
            }
            DeviceCommand::Telemetry {
                enterprise,
                device,
                json,
            } => {
                let kits = client.telemetry(&enterprise, &device).await?;
                if json {
                    return print_json(&kits);
                }
                for k in &kits {
                    let mean = if k.latency_count == 0 {
                        0.0
                    } else {
                        k.latency_sum_ms / k.latency_count as f64
                    };
                    println!(
                        "{}  {}  {} requests, {} errors, {} overloaded, mean {:.1} ms, p99 ≤ {} ms",
                        k.device_id,
                        k.kit_reference,
                        k.requests,
                        k.errors,
                        k.overloaded,
                        mean,
                        k.latency_quantile_ms(0.99)
                            .map_or("?".to_string(), |v| v.to_string())
                    );
                    for (step, (count, sum)) in &k.stages {
                        println!(
                            "    {step:<16} mean {:.2} ms",
                            if *count == 0 {
                                0.0
                            } else {
                                sum / *count as f64
                            }
                        );
                    }
                }
            }
            DeviceCommand::Traces {
                enterprise,
                device,
                kit,
                trace_id,
                limit,
                json,
            } => {
                let v = client
                    .traces(&algobay_sdk::fleet::TraceQuery {
                        enterprise,
                        device,
                        kit,
                        trace_id,
                        limit,
                    })
                    .await?;
                if json {
                    return print_json(&v);
                }
                for t in &v {
                    println!(
                        "{}  {}  {}  {:.1} ms{}",
                        t.trace_id,
                        t.device_id,
                        t.kit_reference,
                        t.duration_ms,
                        if t.error.is_empty() {
                            String::new()
                        } else {
                            format!("  error: {}", t.error)
                        }
                    );
                    for (step, ms) in &t.steps {
                        println!("    {step:<16} {ms:.2} ms");
                    }
                }
                println!("{} trace(s)", v.len());
            }
            DeviceCommand::Samples {
                enterprise,
                kit,
                limit,
                json,
            } => {
                let (v, _) = client.list_samples(&enterprise, &kit, limit, "").await?;
                if json {
                    return print_json(&v);
                }
                for s in &v {
                    println!(
                        "{}  {}  {}  {}",
                        &s.id[..12.min(s.id.len())],
                        s.device_id,
                        s.kit_reference,
                        s.reason
                    );
                    for i in &s.inputs {
                        println!(
                            "    {} {} {:?} {} ({} bytes)",
                            i.name, i.datatype, i.shape, i.digest, i.size
                        );
                    }
                }
                println!("{} sample(s)", v.len());
            }
            DeviceCommand::Revoke { id } => {
                client.revoke_device(&id).await?;
                println!("device {id} revoked");
            }
        }
        Ok(())
    })
}

pub fn deploy(g: &Global, c: &Connection, cmd: DeployCommand) -> anyhow::Result<()> {
    rt()?.block_on(async {
        let client = connect(g, c).await?;
        match cmd {
            DeployCommand::Create {
                kit,
                enterprise,
                selector,
                canary,
                soak,
                max_error_rate,
                max_p99_ms,
                manual_promote,
                no_samples,
                json,
            } => {
                let d = client
                    .create_deployment(
                        &enterprise,
                        &kit,
                        labels("selector", &selector)?,
                        RolloutPolicy {
                            canary_share: canary,
                            soak_seconds: soak,
                            max_error_rate,
                            max_p99_ms,
                            manual_promote,
                            sampling_off: no_samples,
                        },
                    )
                    .await?;
                if json {
                    return print_json(&d);
                }
                print_deployment(&d);
                println!("canary devices: {}", d.canary_devices.join(", "));
            }
            DeployCommand::Status { id, json } => {
                let s = client.deployment_status(&id).await?;
                if json {
                    return print_json(&s);
                }
                print_deployment(&s.deployment);
                print_devices(&s.devices);
            }
            DeployCommand::List { enterprise, json } => {
                let v = client.list_deployments(&enterprise).await?;
                if json {
                    return print_json(&v);
                }
                v.iter().for_each(print_deployment);
            }
            DeployCommand::Promote { id, reason } => print_deployment(
                &client
                    .deployment_action(&id, Action::Promote, &reason)
                    .await?,
            ),
            DeployCommand::Pause { id, reason } => print_deployment(
                &client
                    .deployment_action(&id, Action::Pause, &reason)
                    .await?,
            ),
            DeployCommand::Rollback { id, reason } => print_deployment(
                &client
                    .deployment_action(&id, Action::Rollback, &reason)
                    .await?,
            ),
        }
        Ok(())
    })
}
