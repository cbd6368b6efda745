//! What a run needs before its recipes: the teams (a key and a token each,
//! made and registered the first time) and the tools' WASM (stage crates
//! built in one cargo run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use algobay_runtime::SecretKey;

use super::recipe::LineFile;
use super::{io, LineError, LineOptions};
use crate::client::{Client, SdkError};

/// A team as the line publishes: its client and signing key.
pub(super) struct Team {
    pub(super) client: Client,
    pub(super) key: SecretKey,
}

/// A tool's card: its description, then what its stage crate's own
/// documentation says it does, takes and is configured with (the `//!`
/// lines of `src/lib.rs`; none for a tool given as a `.wasm` file).
pub(super) fn tool_card(base: &Path, name: &str, spec: &super::recipe::ToolSpec) -> String {
    let lib = base.join(&spec.stage).join("src/lib.rs");
    let doc: Vec<String> = std::fs::read_to_string(&lib)
        .unwrap_or_default()
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l).to_owned())
        .collect();
    let mut card = format!("# {name}\n\n{}\n\n", spec.description);
    if !doc.is_empty() {
        card.push_str("## What it does and its config\n\n");
        card.push_str(doc.join("\n").trim());
        card.push_str("\n\n");
    }
    card.push_str(&format!(
        "A WASM stage (component) used by the production line's kits; published by `{}`. \
         Its inputs and outputs are the artifact's contract.\n",
        spec.team
    ));
    card
}

/// Every tool's WASM: `.wasm` files read, stage crates built in one cargo
/// run (a no-op when nothing changed).
pub(super) fn build_stages(
    cargo: &Path,
    base: &Path,
    line: &LineFile,
) -> Result<BTreeMap<String, Vec<u8>>, LineError> {
    let tool_err = |tool: &str, message: String| LineError::Tool {
        tool: tool.to_owned(),
        message,
    };
    let mut out = BTreeMap::new();
    // tool → (crate folder, package name)
    let mut crates: Vec<(String, PathBuf, String)> = Vec::new();
    for (name, spec) in &line.tools {
        let path = base.join(&spec.stage);
        if path.is_file() {
            out.insert(name.clone(), std::fs::read(&path).map_err(io(&path))?);
            continue;
        }
        let manifest = path.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| tool_err(name, format!("{}: {e}", manifest.display())))?;
        let pkg = toml::from_str::<toml::Value>(&text)
            .ok()
            .and_then(|v| v.get("package")?.get("name")?.as_str().map(str::to_owned))
            .ok_or_else(|| tool_err(name, format!("{} names no package", manifest.display())))?;
        let dir = path.canonicalize().map_err(io(&path))?;
        crates.push((name.clone(), dir, pkg));
    }
    let Some((_, first, _)) = crates.first() else {
        return Ok(out);
    };
    let meta = std::process::Command::new(cargo)
        .current_dir(first)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| tool_err("*", format!("cannot run {}: {e}", cargo.display())))?;
    if !meta.status.success() {
        return Err(tool_err(
            "*",
            String::from_utf8_lossy(&meta.stderr).trim().to_owned(),
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)
        .map_err(|e| tool_err("*", format!("cargo metadata: {e}")))?;
    let target = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| tool_err("*", "cargo metadata names no target directory".into()))?;
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(first)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for (_, _, pkg) in &crates {
        cmd.args(["--package", pkg]);
    }
    let o = cmd
        .output()
        .map_err(|e| tool_err("*", format!("cannot run {}: {e}", cargo.display())))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        return Err(tool_err(
            "*",
            format!(
                "cargo build failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    for (name, _, pkg) in crates {
        let path = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", pkg.replace('-', "_")));
        out.insert(name, std::fs::read(&path).map_err(io(&path))?);
    }
    Ok(out)
}

/// A team's key and token, made and registered the first time.
pub(super) async fn team(
    operator: &Client,
    opts: &LineOptions,
    work: &Path,
    name: &str,
    display: &str,
) -> Result<Team, LineError> {
    let bad = |m: String| LineError::Team {
        team: name.to_owned(),
        message: m,
    };
    let key_path = work.join("keys").join(format!("{name}.key"));
    let key = if key_path.is_file() {
        SecretKey::read(&key_path)?
    } else {
        let k = SecretKey::generate();
        write_secret(&key_path, k.to_text().as_bytes())?;
        k
    };
    // The public half, for anyone who verifies the team's kits (`--trust`).
    let pub_path = work.join("keys").join(format!("{name}.key.pub"));
    let public = format!("{}\n", key.public());
    if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(public.as_str()) {
        algobay_runtime::fsx::write_atomic(&pub_path, public.as_bytes()).map_err(io(&pub_path))?;
    }
    let token_path = work.join("tokens").join(format!("{name}.token"));
    if let Ok(token) = std::fs::read_to_string(&token_path) {
        let client =
            Client::connect(&opts.url, Some(token.trim().into()), opts.ca_pem.clone()).await?;
        if matches!(client.whoami().await, Ok((_, subject)) if subject == name) {
            return Ok(Team { client, key });
        }
    }
    match operator
        .create_team(name, display, &key.public().to_string())
        .await
    {
        Ok(()) => {}
        Err(SdkError::Status {
            code: tonic::Code::AlreadyExists,
            ..
        }) => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    let (_, token) = operator
        .create_token("team", name, 0)
        .await
        .map_err(|e| bad(e.to_string()))?;
    write_secret(&token_path, token.as_bytes())?;
    let client = Client::connect(&opts.url, Some(token), opts.ca_pem.clone()).await?;
    Ok(Team { client, key })
}

pub(super) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), LineError> {
    algobay_runtime::fsx::write_atomic(path, bytes).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(())
}
