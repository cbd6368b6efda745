//! A throwaway S3-compatible server for tests: `algobay-s3-server`
//! (`tools/s3-server`: s3s-fs's store behind a listener with TCP_NODELAY,
//! built once by the set-up into `$ALGOBAY_TOOLS_DIR/bin`, by default
//! `~/.cache/algobay/tools/bin`, or found as `ALGOBAY_S3_SERVER` or on the
//! `PATH`) on 127.0.0.1 and a free port, over a temporary folder, killed when
//! dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const ACCESS_KEY: &str = "algobay-test";
pub const SECRET_KEY: &str = "algobay-test-secret";

#[derive(Debug)]
pub struct S3 {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

/// Where the server's binary is.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ALGOBAY_S3_SERVER") {
        return p.into();
    }
    let tools = std::env::var_os("ALGOBAY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/algobay/tools")
        });
    let cached = tools.join("bin/algobay-s3-server");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("algobay-s3-server")
}

#[allow(clippy::unwrap_used)]
impl S3 {
    /// Starts the server and waits until it answers.
    pub fn start() -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (the set-up installs it): {e}",
                    binary().display()
                )
            });
        let s = S3 { dir, child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the S3 server did not listen within 20 s: {}",
                std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        s
    }

    /// Makes a bucket (a folder of the server's root) and returns its `s3://` URL.
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.dir.path().join("root").join(name)).unwrap();
        format!("s3://{name}?endpoint=http://127.0.0.1:{}", self.port)
    }

    /// The credentials the server takes, for the process environment.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
