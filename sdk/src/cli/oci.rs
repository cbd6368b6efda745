//! `algobay kit push --oci` and `kit pull --oci`: kits in OCI distribution registries.

use std::path::Path;

use algobay_runtime::KitArchive;
use algobay_sdk::oci::{OciClient, OciOptions, OciRef};

use super::registry::{bar, rt};
use super::{Global, NotFound};

/// A client with credentials and CA from the environment.
fn client() -> anyhow::Result<OciClient> {
    Ok(OciClient::new(OciOptions::from_env()?)?)
}

pub fn push(g: &Global, file: &Path, reference: &str) -> anyhow::Result<()> {
    if !file.exists() {
        anyhow::bail!(NotFound(format!(
            "kit file {} does not exist",
            file.display()
        )));
    }
    let r: OciRef = reference.parse()?;
    let kit = KitArchive::read_file(file)?;
    let client = client()?;
    let pushed = rt()?.block_on(async {
        let (bar, progress) = bar(g, "pushing");
        let out = client.push_kit(&kit, &r, progress).await;
        bar.finish_and_clear();
        out
    })?;
    println!(
        "pushed kit {} {} to {r} as {}@{} ({} of {} bytes sent; the rest the registry had)",
        kit.manifest.reference(),
        kit.digest(),
        r.repository,
        pushed.manifest_digest,
        pushed.sent,
        pushed.total
    );
    Ok(())
}

pub fn pull(
    g: &Global,
    reference: &str,
    output: &Path,
    trust: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let r: OciRef = reference.parse()?;
    let roots = g.trust(trust)?;
    let client = client()?;
    let (kit, manifest_digest) = rt()?.block_on(async {
        let (bar, progress) = bar(g, "pulling");
        let out = client.pull_kit(&r, progress).await;
        bar.finish_and_clear();
        out
    })?;
    // As a kit from the registry: its signatures against the local trust roots.
    let verified = kit.clone().verify(&roots)?;
    kit.write_file(output)?;
    println!(
        "pulled kit {} {} from {r} ({manifest_digest}), signed by {} -> {}",
        kit.manifest.reference(),
        kit.digest(),
        verified
            .signers
            .iter()
            .map(|k| k.id())
            .collect::<Vec<_>>()
            .join(", "),
        output.display()
    );
    Ok(())
}
