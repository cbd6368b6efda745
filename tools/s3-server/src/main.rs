//! A throwaway S3-compatible server: s3s-fs's store (objects as files under a
//! root folder, one folder per bucket) served over HTTP with TCP_NODELAY on
//! every connection.
//!
//! The `s3s-fs` binary leaves Nagle's algorithm on: a reply's headers and
//! its body leave in two writes, and the body waits for the client's
//! acknowledgement of the headers, which Linux delays by 40 ms. Every small
//! GET then took 42 ms, a figure of the test server and not of S3 (production
//! servers, such as MinIO's Go listener, turn Nagle off). The command line is
//! s3s-fs's: `--host H --port P [--access-key K --secret-key S] ROOT`.

use std::path::PathBuf;
use std::process::ExitCode;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

const USAGE: &str = "usage: algobay-s3-server [--host HOST] [--port PORT] \
[--access-key KEY --secret-key SECRET] ROOT\n\n\
Serves the folder ROOT as an S3-compatible store (a bucket per folder) on\n\
HOST:PORT (default 127.0.0.1:8014), for tests and benchmarks only.";

struct Options {
    host: String,
    port: u16,
    keys: Option<(String, String)>,
    root: PathBuf,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut host, mut port, mut key, mut secret, mut root) =
        ("127.0.0.1".to_owned(), 8014u16, None, None, None);
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("`{name}` needs a value"));
        match a.as_str() {
            "--host" => host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                port = v
                    .parse()
                    .map_err(|_| format!("--port `{v}` is not a port number"))?;
            }
            "--access-key" => key = Some(value("--access-key")?),
            "--secret-key" => secret = Some(value("--secret-key")?),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("`{flag}` is not an option")),
            path if root.is_none() => root = Some(PathBuf::from(path)),
            extra => return Err(format!("`{extra}`: only one ROOT folder")),
        }
    }
    let keys = match (key, secret) {
        (Some(k), Some(s)) => Some((k, s)),
        (None, None) => None,
        _ => return Err("--access-key and --secret-key go together".into()),
    };
    let root = root.ok_or("the ROOT folder is missing")?;
    Ok(Options {
        host,
        port,
        keys,
        root,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("algobay-s3-server: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fs = match s3s_fs::FileSystem::new(&opts.root) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "algobay-s3-server: cannot serve {}: {e:?}",
                opts.root.display()
            );
            return ExitCode::from(1);
        }
    };
    let mut b = S3ServiceBuilder::new(fs);
    if let Some((k, s)) = opts.keys {
        b.set_auth(SimpleAuth::from_single(k, s));
    }
    let service = b.build();
    let listener = match tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "algobay-s3-server: cannot listen on {}:{}: {e}",
                opts.host, opts.port
            );
            return ExitCode::from(1);
        }
    };
    let server = Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            got = listener.accept() => {
                let Ok((socket, _)) = got else { continue };
                let _ = socket.set_nodelay(true);
                let conn = server
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}
