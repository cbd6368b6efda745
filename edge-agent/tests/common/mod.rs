//! Real processes for the fleet tests: a registry, agents, a cutting proxy, and
//! the kits they move, built from the examples.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use algobay_runtime::{KitArchive, SecretKey};
use algobay_sdk::Client;

pub mod digits;
mod kits;
pub mod sim;

pub use kits::*;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build/onnxruntime/libonnxruntime.so.1.32.0"))
}

/// The folder the workspace's binaries are built into (this test runs from its `deps/`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn registry_bin() -> PathBuf {
    let p = bin_dir().join("algobay-registry");
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --release -p algobay-registry` (the README's test command builds it)",
        p.display()
    );
    p
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_algobay-agent"))
}

/// A `--name N` argument of a benchmark, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..1) of `v` (sorted in place).
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Polls `f` until it returns `Some`, or panics with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_or(secs, what, f, String::new)
}

/// [`wait_for`], adding `context()` (logs, states) to the panic message.
pub fn wait_or<T>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads stdout lines until one starts with `prefix`; the rest is drained in the background.
fn read_until(child: &mut Child, prefix: &str) -> String {
    read_lines_until(child, prefix).0
}

/// The line starting with `prefix`, and the lines before it.
fn read_lines_until(child: &mut Child, prefix: &str) -> (String, Vec<String>) {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with(prefix) => {
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return (l, seen);
            }
            Some(Ok(l)) => seen.push(l),
            _ => panic!("process ended before printing `{prefix}`: {seen:?}"),
        }
    }
}

// ---------------------------------------------------------------- registry

pub struct RegistryProc {
    child: Child,
    pub data: PathBuf,
    pub port: u16,
    pub ca_pem: String,
    pub operator: String,
    /// The web console's address (`https://127.0.0.1:PORT`).
    pub web: String,
}

impl RegistryProc {
    /// Starts `algobay-registry serve` on `port` (0: any free one).
    pub fn start(data: &Path, port: u16) -> RegistryProc {
        Self::start_with(data, port, &[])
    }

    /// [`Self::start`] with more arguments (`--meta postgres://…`).
    pub fn start_with(data: &Path, port: u16, extra: &[&str]) -> RegistryProc {
        Self::start_env(data, port, extra, &[])
    }

    /// [`Self::start_with`] with environment variables (`AWS_*` for `--blobs s3://…`).
    /// A replica joining a store another one set up has no operator token of its own
    /// (`operator` is then empty).
    pub fn start_env(data: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> RegistryProc {
        let mut child = Command::new(registry_bin())
            .envs(env.iter().copied())
            .args(["serve", "--data"])
            .arg(data)
            .args(extra)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                "127.0.0.1:0",
                "--web-listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--ort-lib",
            ])
            .arg(ort_lib())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data.with_extension("log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let (line, before) = read_lines_until(&mut child, "listening on ");
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        let web = before
            .iter()
            .find_map(|l| l.strip_prefix("console on "))
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        RegistryProc {
            child,
            data: data.to_path_buf(),
            port,
            ca_pem: std::fs::read_to_string(data.join("tls/cert.pem")).unwrap(),
            operator: std::fs::read_to_string(data.join("operator.token"))
                .unwrap_or_default()
                .trim()
                .to_owned(),
            web,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub async fn client(&self, token: &str) -> Client {
        Client::connect(
            &self.url(),
            Some(token.to_owned()),
            Some(self.ca_pem.clone()),
        )
        .await
        .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- agent

pub struct AgentProc {
    child: Child,
    pub dir: PathBuf,
    pub http: String,
    /// `host:port` of the Open Inference Protocol's gRPC form.
    pub grpc: String,
}

/// Settings of one test device.
pub struct DeviceSpec<'a> {
    pub name: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub stage_memory_mb: Option<u32>,
    /// More lines for agent.toml.
    pub extra: &'a str,
}

impl AgentProc {
    /// Writes `agent.toml` in `dir` (once) and starts `algobay-agent run`.
    pub fn start(
        dir: &Path,
        registry_url: &str,
        ca_pem: &str,
        token: &str,
        trust: &Path,
        spec: &DeviceSpec,
    ) -> AgentProc {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("agent.toml");
        if !cfg.exists() {
            std::fs::write(dir.join("registry.pem"), ca_pem).unwrap();
            let labels: Vec<String> = spec
                .labels
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            let mut text = format!(
                "registry = \"{registry_url}\"\nca_cert = \"registry.pem\"\nenrollment_token = \"{token}\"\n\
data_dir = \"data\"\nname = \"{}\"\ntrust = [\"{}\"]\nort_library = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
retry_max_seconds = 1\n",
                spec.name,
                trust.display(),
                ort_lib().display()
            );
            // Quick syncs unless the spec says otherwise.
            for (key, quick) in [("sync_wait_seconds", 2), ("report_seconds", 1)] {
                if !spec.extra.contains(&format!("{key} =")) {
                    text.push_str(&format!("{key} = {quick}\n"));
                }
            }
            if let Some(mb) = spec.stage_memory_mb {
                text.push_str(&format!("stage_memory_mb = {mb}\n"));
            }
            text.push_str("grpc_listen = \"127.0.0.1:0\"\n");
            text.push_str(spec.extra);
            text.push_str(&format!("\nlabels = {{ {} }}\n", labels.join(", ")));
            std::fs::write(&cfg, text).unwrap();
        }
        Self::run(dir)
    }

    fn run(dir: &Path) -> AgentProc {
        let mut child = Command::new(agent_bin())
            .args(["run", "--config"])
            .arg(dir.join("agent.toml"))
            .args(["--log", "info"])
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("agent.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let line = read_until(&mut child, "device ");
        let words: Vec<&str> = line.split(' ').collect();
        let after = |w: &str| {
            words
                .iter()
                .position(|x| *x == w)
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        AgentProc {
            child,
            dir: dir.to_path_buf(),
            http: after("on"),
            grpc: after("and").trim_start_matches("grpc://").to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, then the same command again.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        *self = Self::run(&self.dir.clone());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http(&self.http, "GET", "/v1/status", &[]);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The reference of the active kit, if any.
    pub fn active(&self) -> Option<String> {
        self.status()["active"]["reference"]
            .as_str()
            .map(str::to_owned)
    }

    pub fn infer(&self, body: &[u8]) -> (u16, serde_json::Value) {
        let (code, text) = http(&self.http, "POST", "/v1/infer", body);
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A runtime of two worker threads, as the machine has cores.
pub fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A registry seeded by [`seed`] and enterprise acme's client.
pub fn seeded(rt: &tokio::runtime::Runtime, dir: &Path, push_ocr: bool) -> (RegistryProc, Client) {
    let reg = RegistryProc::start(&dir.join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, push_ocr));
    let acme = rt.block_on(reg.client(&acme_token));
    (reg, acme)
}

/// A process's resident memory and its peak, in MiB.
pub fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An HTTP answer with its headers and raw body.
pub struct Answer {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `POST /v1/infer` with `body`; (status, answer, the id the agent gave the
/// request, which feedback names).
pub fn infer_id(base: &str, body: &[u8]) -> (u16, Answer, String) {
    let (code, ans) = http_with(base, "POST", "/v1/infer", &[], body);
    let rid = ans.header("x-request-id").unwrap_or_default().to_owned();
    (code, ans, rid)
}

/// One HTTP/1.1 request with extra headers; (status, answer).
pub fn http_with(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Answer) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (
        code,
        Answer {
            headers,
            body: out[split + 4..].to_vec(),
        },
    )
}

/// One HTTP/1.1 request over a fresh connection; (status, body).
pub fn http(base: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

// ---------------------------------------------------------------- proxy

/// A TCP proxy in front of the registry that counts the bytes it carries to
/// the client and can cut one connection after a number of them.
pub struct Proxy {
    pub port: u16,
    pub to_client: Arc<AtomicU64>,
    pub cut_after: Arc<AtomicU64>,
    pub cuts: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let to_client = Arc::new(AtomicU64::new(0));
        let cut_after = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let (tc, ca, cu) = (to_client.clone(), cut_after.clone(), cuts.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // client → server
                let (mut cr, mut sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut cr, &mut sw);
                    let _ = sw.shutdown(std::net::Shutdown::Write);
                });
                // server → client, counted, maybe cut
                let (tc, ca, cu) = (tc.clone(), ca.clone(), cu.clone());
                std::thread::spawn(move || {
                    let (mut sr, mut cw) = (s2, c2);
                    let mut buf = vec![0u8; 64 << 10];
                    let mut here = 0u64;
                    loop {
                        let n = match sr.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cw.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        here += n as u64;
                        tc.fetch_add(n as u64, Ordering::SeqCst);
                        let limit = ca.load(Ordering::SeqCst);
                        if limit > 0 && here >= limit {
                            ca.store(0, Ordering::SeqCst);
                            cu.fetch_add(1, Ordering::SeqCst);
                            let _ = cw.shutdown(std::net::Shutdown::Both);
                            let _ = sr.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                    let _ = cw.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy {
            port,
            to_client,
            cut_after,
            cuts,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

// ---------------------------------------------------------------- samples

/// Every sample of the client's enterprise, a page at a time.
pub fn all_samples(rt: &tokio::runtime::Runtime, c: &Client) -> Vec<algobay_sdk::fleet::Sample> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = rt.block_on(c.list_samples("", "", 500, &token)).unwrap();
        out.extend(page);
        if next.is_empty() {
            return out;
        }
        token = next;
    }
}

/// How many of the client's enterprise's samples carry a feedback label.
pub fn feedback_labels(rt: &tokio::runtime::Runtime, c: &Client) -> usize {
    all_samples(rt, c)
        .iter()
        .filter(|s| s.labels.iter().any(|l| l.source == "feedback"))
        .count()
}

// ---------------------------------------------------------------- commands

/// A command's exit code, standard output and standard error.
pub fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A command's standard output; it must succeed.
pub fn ok(c: &mut Command) -> String {
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{c:?}\nstdout: {out}\nstderr: {err}");
    out
}
