//! The pilot: the line's kits in service at enterprises, on real agents.
//!
//! `algobay line pilot LINE.toml` reads the enterprises LINE.toml names and,
//! for each, registers the enterprise (as operator), mints its token, and
//! starts one device: a real `algobay-agent` process on this machine with its
//! own key, data folder and port, enrolled with a one-time token of that
//! enterprise. The enterprise then deploys a kit the line published for its
//! industry (chosen in turn among them); the device pulls, verifies and
//! golden-tests it, and the pilot sends it the kit's own sample inputs (holdout
//! rows of the recipe's data). An enterprise is done when the registry holds
//! both the device's report of those requests and its OpenTelemetry figures for
//! the kit, which is what `algobay coverage` counts as served.
//!
//! A second run finds the enterprises, tokens and enrolled devices of the first
//! (kept in the work folder), restarts the agents and serves again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::recipe::INDUSTRIES;
use super::setup::write_secret;
use super::{io, open, LineError, State};
use crate::client::{Client, Kind, SdkError};
use crate::fleet::RolloutPolicy;

/// The pilot's enterprises file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PilotFile {
    #[serde(rename = "enterprise", default)]
    pub enterprises: Vec<PilotEnterprise>,
}

/// `[[enterprise]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PilotEnterprise {
    pub name: String,
    pub display_name: String,
    /// One of the programme's industries; the device gets a kit made for it.
    pub industry: String,
}

impl PilotFile {
    pub fn read(path: &Path) -> Result<PilotFile, LineError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bad = |message: String| LineError::Recipe {
            path: path.to_owned(),
            message,
        };
        let f: PilotFile = toml::from_str(&text).map_err(|e| bad(e.to_string().trim().into()))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in f.enterprises.iter().enumerate() {
            let ok = (2..=40).contains(&e.name.len())
                && e.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(bad(format!(
                    "enterprise[{i}].name `{}` must be 2 to 40 of a-z, 0-9 and -",
                    e.name
                )));
            }
            if !seen.insert(e.name.as_str()) {
                return Err(bad(format!(
                    "enterprise[{i}].name `{}` is listed twice",
                    e.name
                )));
            }
            if !INDUSTRIES.contains(&e.industry.as_str()) {
                return Err(bad(format!(
                    "enterprise[{i}].industry `{}` is not one of {}",
                    e.industry,
                    INDUSTRIES.join(", ")
                )));
            }
            if e.display_name.trim().is_empty() {
                return Err(bad(format!("enterprise[{i}].display_name is empty")));
            }
        }
        Ok(f)
    }
}

/// Where the pilot runs, and how.
#[derive(Clone, Debug)]
pub struct PilotOptions {
    pub url: String,
    pub ca_pem: Option<String>,
    /// An operator token: the pilot registers the enterprises and mints their tokens.
    pub operator_token: String,
    /// The `algobay-agent` program.
    pub agent: PathBuf,
    /// The line's work folder, in place of the one LINE.toml names.
    pub work: Option<PathBuf>,
    /// Requests each device serves (its kit's samples, in turn).
    pub requests: usize,
    /// Enterprises set up at once.
    pub parallel: usize,
    /// How long one enterprise may take (enrolment to telemetry).
    pub timeout: Duration,
}

/// What happened at one enterprise.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Served {
    pub enterprise: String,
    pub industry: String,
    pub device: String,
    pub kit: String,
    /// Requests sent, and answered with 200.
    pub requests: u64,
    pub answered: u64,
    /// served, or failed.
    pub status: String,
    pub detail: String,
    /// The agent's peak resident memory (KiB), read when every device had served.
    pub peak_rss_kib: u64,
    pub seconds: f64,
}

/// The pilot's report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PilotReport {
    pub enterprises: Vec<Served>,
    pub served: usize,
    pub agents: usize,
    /// Sum of the agents' peak resident memory, and the largest (MiB).
    pub peak_rss_total_mib: f64,
    pub peak_rss_max_mib: f64,
    /// Their resident memory together once all had served (MiB).
    pub rss_total_mib: f64,
    pub seconds: f64,
}

/// The running agents; stopping them (or dropping this) ends their processes.
#[derive(Debug)]
pub struct Pilot {
    pub report: PilotReport,
    agents: Vec<tokio::process::Child>,
}

impl Pilot {
    /// Stops every agent (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        for a in &self.agents {
            if let Some(pid) = a.id() {
                // SAFETY: sending a signal to a child this process started.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        for a in &mut self.agents {
            if tokio::time::timeout(Duration::from_secs(10), a.wait())
                .await
                .is_err()
            {
                let _ = a.kill().await;
            }
        }
    }
}

/// A kit the line published, as the pilot deploys it.
#[derive(Clone, Debug)]
struct KitUse {
    reference: String,
    /// (input file, content type) of its golden samples.
    samples: Vec<(PathBuf, &'static str)>,
}

/// Stands up the pilot of `line_file`; the agents keep running until [`Pilot::stop`].
pub async fn run(
    line_file: &Path,
    opts: &PilotOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Pilot, LineError> {
    let started = Instant::now();
    let (line, base, work) = open(line_file, opts.work.as_deref())?;
    let file = line
        .enterprises
        .as_deref()
        .ok_or_else(|| LineError::Recipe {
            path: line_file.to_owned(),
            message: "names no `enterprises` file for the pilot".into(),
        })?;
    let pilot = PilotFile::read(&base.join(file))?;
    let work = work.canonicalize().map_err(io(&work))?;
    let state = State::load(&work.join("state.json"))?;
    let dir = work.join("pilot");
    for d in ["tokens", "devices"] {
        std::fs::create_dir_all(dir.join(d)).map_err(io(&dir))?;
    }
    let ca_path = match &opts.ca_pem {
        Some(pem) => {
            let p = dir.join("registry.pem");
            algobay_runtime::fsx::write_atomic(&p, pem.as_bytes()).map_err(io(&p))?;
            Some(p)
        }
        None => None,
    };
    let operator = Client::connect(
        &opts.url,
        Some(opts.operator_token.clone()),
        opts.ca_pem.clone(),
    )
    .await?;

    // The kits the line published, by the industries the registry holds for them.
    progress("finding the line's kits");
    let mut by_industry: BTreeMap<String, Vec<KitUse>> = BTreeMap::new();
    for r in state.recipes.values() {
        for o in &r.outcomes {
            if o.kind != "kit" || !(o.status == "published" || o.status == "unchanged") {
                continue;
            }
            let Ok(a) = operator.get(&o.reference, Some(Kind::Kit)).await else {
                continue;
            };
            let name = o
                .reference
                .split_once('/')
                .and_then(|(_, r)| r.split_once('@'))
                .map(|(n, _)| n)
                .unwrap_or_default();
            let samples = sample_inputs(&work.join("kits").join(name).join("samples"));
            if samples.is_empty() {
                continue;
            }
            for i in &a.industries {
                by_industry.entry(i.clone()).or_default().push(KitUse {
                    reference: o.reference.clone(),
                    samples: samples.clone(),
                });
            }
        }
    }
    for kits in by_industry.values_mut() {
        kits.sort_by(|a, b| a.reference.cmp(&b.reference));
    }

    // Each enterprise gets the next kit of its industry.
    let mut turn: BTreeMap<&str, usize> = BTreeMap::new();
    let mut jobs = Vec::new();
    for e in &pilot.enterprises {
        let n = turn.entry(e.industry.as_str()).or_default();
        let kit = by_industry
            .get(&e.industry)
            .filter(|k| !k.is_empty())
            .map(|k| k[*n % k.len()].clone());
        *n += 1;
        jobs.push((e.clone(), kit));
    }
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let ctx = Ctx {
        opts,
        dir: &dir,
        ca_path: ca_path.as_deref(),
        operator: &operator,
    };
    let results: Vec<(Served, Option<tokio::process::Child>)> =
        futures::stream::iter(jobs.into_iter().map(|(e, kit)| {
            let ctx = &ctx;
            let done = &done;
            async move {
                let t0 = Instant::now();
                let mut s = Served {
                    enterprise: e.name.clone(),
                    industry: e.industry.clone(),
                    ..Default::default()
                };
                let child = match kit {
                    None => {
                        // Registered all the same: counted as an enterprise, not as served.
                        s.status = "failed".into();
                        s.detail = match ctx.enterprise_client(&e).await {
                            Ok(_) => format!("the line published no kit for `{}`", e.industry),
                            Err(m) => m,
                        };
                        None
                    }
                    Some(kit) => {
                        s.kit = kit.reference.clone();
                        let mut child = None;
                        let r = tokio::time::timeout(
                            ctx.opts.timeout,
                            ctx.enterprise(&e, &kit, &mut s, &mut child),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "not served within {} s",
                                ctx.opts.timeout.as_secs()
                            ))
                        });
                        match r {
                            Ok(()) => s.status = "served".into(),
                            Err(m) => {
                                s.status = "failed".into();
                                s.detail = m;
                            }
                        }
                        child
                    }
                };
                s.seconds = t0.elapsed().as_secs_f64();
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(&format!(
                    "{n}/{total} enterprises ({} {})",
                    s.enterprise, s.status
                ));
                (s, child)
            }
        }))
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;

    let mut report = PilotReport::default();
    let mut agents = Vec::new();
    for (mut s, child) in results {
        if let Some(c) = child {
            if let Some(pid) = c.id() {
                let (peak, now) = memory(pid);
                s.peak_rss_kib = peak;
                report.peak_rss_total_mib += peak as f64 / 1024.0;
                report.peak_rss_max_mib = report.peak_rss_max_mib.max(peak as f64 / 1024.0);
                report.rss_total_mib += now as f64 / 1024.0;
            }
            agents.push(c);
        }
        report.enterprises.push(s);
    }
    report
        .enterprises
        .sort_by(|a, b| a.enterprise.cmp(&b.enterprise));
    report.served = report
        .enterprises
        .iter()
        .filter(|s| s.status == "served")
        .count();
    report.agents = agents.len();
    report.seconds = started.elapsed().as_secs_f64();
    let path = dir.join("report.json");
    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    algobay_runtime::fsx::write_atomic(&path, &json).map_err(io(&path))?;
    Ok(Pilot { report, agents })
}

/// The input files of a kit's golden samples (`samples/*.{json,csv}`, not the expected outputs).
fn sample_inputs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, &'static str)> = rd
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            if name.ends_with(".expected.json") {
                None
            } else if name.ends_with(".json") {
                Some((p, "application/json"))
            } else if name.ends_with(".csv") {
                Some((p, "text/csv"))
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out
}

/// (peak, current) resident memory of a process in KiB, from /proc.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Ctx<'a> {
    opts: &'a PilotOptions,
    dir: &'a Path,
    ca_path: Option<&'a Path>,
    operator: &'a Client,
}

impl Ctx<'_> {
    /// The enterprise, its token, its device and agent, the deployment, the
    /// requests, and the registry's view of them.
    async fn enterprise(
        &self,
        e: &PilotEnterprise,
        kit: &KitUse,
        s: &mut Served,
        child: &mut Option<tokio::process::Child>,
    ) -> Result<(), String> {
        let client = self.enterprise_client(e).await?;
        let dev_dir = self.dir.join("devices").join(&e.name);
        let config = dev_dir.join("agent.toml");
        if !config.is_file() {
            let (_, token) = client
                .create_enrollment_token("", BTreeMap::new(), 0)
                .await
                .map_err(|e| format!("enrollment token: {e}"))?;
            std::fs::create_dir_all(&dev_dir).map_err(|e| format!("{}: {e}", dev_dir.display()))?;
            let toml = agent_toml(&self.opts.url, self.ca_path, &token, &dev_dir, &e.name);
            write_secret(&config, toml.as_bytes()).map_err(|e| e.to_string())?;
        }
        let (c, device, http) = start_agent(&self.opts.agent, &config, &dev_dir).await?;
        *child = Some(c);
        s.device = device.clone();

        let current = client
            .list_deployments("")
            .await
            .map_err(|e| format!("deployments: {e}"))?;
        let live = current.iter().any(|d| {
            d.kit_reference == kit.reference && matches!(d.state.as_str(), "canary" | "promoted")
        });
        if !live {
            let policy = RolloutPolicy {
                canary_share: 1.0,
                soak_seconds: 0,
                ..Default::default()
            };
            client
                .create_deployment("", &kit.reference, BTreeMap::new(), policy)
                .await
                .map_err(|e| format!("deployment of {}: {e}", kit.reference))?;
        }
        loop {
            let (code, body) = request(&http, "GET", "/v1/status", "", b"").await?;
            let st: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if code == 200 && st["active"]["reference"] == kit.reference.as_str() {
                break;
            }
            if st["phase"] == "failed" {
                return Err(format!(
                    "the device could not activate {}: {}",
                    kit.reference, st["message"]
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        let want = self.opts.requests.max(1);
        for i in 0..want {
            let (path, ctype) = &kit.samples[i % kit.samples.len()];
            let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (code, answer) = request(&http, "POST", "/v1/infer", ctype, &body).await?;
            s.requests += 1;
            if code == 200 {
                s.answered += 1;
            } else {
                return Err(format!(
                    "{} answered {code} to {}: {}",
                    device,
                    path.display(),
                    String::from_utf8_lossy(&answer)
                ));
            }
        }

        // Served, as the registry sees it: the device's report and its telemetry.
        loop {
            let reported = client
                .list_devices("")
                .await
                .map_err(|e| format!("devices: {e}"))?
                .into_iter()
                .find(|d| d.id == device)
                .is_some_and(|d| {
                    d.state.active_reference == kit.reference && d.state.requests >= s.answered
                });
            let telemetry = client
                .telemetry("", &device)
                .await
                .map_err(|e| format!("telemetry: {e}"))?
                .iter()
                .any(|t| t.kit_reference == kit.reference && t.requests > 0);
            if reported && telemetry {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The enterprise registered and its token (kept in the work folder).
    async fn enterprise_client(&self, e: &PilotEnterprise) -> Result<Client, String> {
        let token_path = self.dir.join("tokens").join(format!("{}.token", e.name));
        let connect =
            |token: String| Client::connect(&self.opts.url, Some(token), self.opts.ca_pem.clone());
        if let Ok(token) = std::fs::read_to_string(&token_path) {
            let c = connect(token.trim().to_owned())
                .await
                .map_err(|e| e.to_string())?;
            if matches!(c.whoami().await, Ok((_, subject)) if subject == e.name) {
                return Ok(c);
            }
        }
        match self
            .operator
            .create_enterprise(&e.name, &e.display_name, vec![e.industry.clone()])
            .await
        {
            Ok(()) => {}
            Err(SdkError::Status {
                code: tonic::Code::AlreadyExists,
                ..
            }) => {}
            Err(err) => return Err(format!("enterprise {}: {err}", e.name)),
        }
        let (_, token) = self
            .operator
            .create_token("enterprise", &e.name, 0)
            .await
            .map_err(|err| format!("token for {}: {err}", e.name))?;
        write_secret(&token_path, token.as_bytes()).map_err(|e| e.to_string())?;
        connect(token).await.map_err(|e| e.to_string())
    }
}

fn agent_toml(url: &str, ca: Option<&Path>, token: &str, dir: &Path, name: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut t = format!(
        "# A pilot device of `{name}`, written by `algobay line pilot`.\n\
         registry = {}\nenrollment_token = {}\ndata_dir = {}\nname = {}\n\
         listen = \"127.0.0.1:0\"\ngrpc_listen = \"\"\n\
         sync_wait_seconds = 20\nreport_seconds = 3\ntelemetry_seconds = 3\n\
         labels = {{ site = \"pilot\" }}\n",
        q(url),
        q(token),
        q(&dir.join("data").to_string_lossy()),
        q(&format!("{name}-edge-1")),
    );
    if let Some(ca) = ca {
        t.push_str(&format!("ca_cert = {}\n", q(&ca.to_string_lossy())));
    }
    t
}

/// Starts `algobay-agent run`; returns the child, its device id and `host:port`.
async fn start_agent(
    agent: &Path,
    config: &Path,
    dir: &Path,
) -> Result<(tokio::process::Child, String, String), String> {
    let log_path = dir.join("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child = tokio::process::Command::new(agent)
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", agent.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten().unwrap_or_default();
    // Keep reading so that the agent never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // "device ID listening on http://ADDR[ and grpc://ADDR]"
    let words: Vec<&str> = first.split_whitespace().collect();
    match (words.first(), words.get(1), words.get(4)) {
        (Some(&"device"), Some(id), Some(url)) if url.starts_with("http://") => Ok((
            child,
            id.to_string(),
            url.trim_start_matches("http://").to_owned(),
        )),
        _ => {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            Err(format!(
                "the agent did not start: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

/// One HTTP/1.1 request to a device's local port; returns (status, body).
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let fail = |e: std::io::Error| format!("{addr}{path}: {e}");
    let mut sock = tokio::net::TcpStream::connect(addr).await.map_err(fail)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await.map_err(fail)?;
    sock.write_all(body).await.map_err(fail)?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.map_err(fail)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: no HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: no HTTP status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((code, body))
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_file_names_the_field_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.toml");
        for (text, want) in [
            (
                "[[enterprise]]\nname = \"A b\"\ndisplay_name = \"x\"\nindustry = \"medical\"\n",
                "enterprise[0].name `A b`",
            ),
            (
                "[[enterprise]]\nname = \"ab\"\ndisplay_name = \"x\"\nindustry = \"farming\"\n",
                "enterprise[0].industry `farming`",
            ),
            (
                "[[enterprise]]\nname = \"ab\"\ndisplay_name = \"x\"\nindustry = \"medical\"\n\
                 [[enterprise]]\nname = \"ab\"\ndisplay_name = \"y\"\nindustry = \"health\"\n",
                "enterprise[1].name `ab` is listed twice",
            ),
            (
                "[[enterprise]]\nname = \"ab\"\nindustry = \"medical\"\n",
                "display_name",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = PilotFile::read(&p).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn chunked_answers_are_joined() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
    }
}
