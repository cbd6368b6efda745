//! Kits as OCI artifacts, on real registry servers (Debian's docker-registry,
//! two of them) and with a standard tool (skopeo): pushed with `algobay kit
//! push --oci`, pulled back and verified offline, copied between registries
//! with their digests kept and still verifying, refused when a layer or the
//! manifest is changed, and deployed to a device that takes its kit from the
//! enterprise's mirror instead of the registry.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A docker-registry on a free loopback port, storing under `dir`.
struct OciRegistry {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl OciRegistry {
    fn start(dir: &Path) -> OciRegistry {
        let tools = std::env::var_os("ALGOBAY_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/algobay/tools")
            });
        let bin = tools.join("bin/docker-registry");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup.sh",
            bin.display()
        );
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("data");
        // docker-registry cannot report a port it picked: take a free one first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let reg = OciRegistry {
            child,
            port,
            storage,
        };
        wait_for(20, "docker-registry to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            (http(&format!("http://127.0.0.1:{port}"), "GET", "/v2/", b"").0 == 200).then_some(())
        });
        reg
    }

    fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The file a blob's bytes are kept in.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn algobay(home: &Path) -> Command {
    let mut c = Command::new(registry_bin().with_file_name("algobay"));
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("ORT_DYLIB_PATH", ort_lib())
        .env_remove("ALGOBAY_TRUST")
        .arg("--quiet");
    c
}

#[test]
fn a_kit_goes_through_oci_registries_verified_and_reaches_a_device_from_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let central = OciRegistry::start(&dir.path().join("oci-central"));
    let mirror = OciRegistry::start(&dir.path().join("oci-mirror"));
    let k = kits();
    let file = dir.path().join("digits.kit");
    k.digits.write_file(&file).unwrap();
    let reference = format!("{}/vendor/algobay/digits-mlp:1.0.0", central.host());

    // Pushed, then pulled back: the same kit, its signature checked offline.
    let out = ok(algobay(&home)
        .args(["kit", "push"])
        .arg(&file)
        .args(["--oci", &reference]));
    let manifest_digest = out
        .split('@')
        .nth(2)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no manifest digest in: {out}"))
        .to_owned();
    assert!(out.contains(&k.digits.digest().to_string()), "{out}");
    let back = dir.path().join("back.kit");
    let out = ok(algobay(&home)
        .args(["kit", "pull", "--oci", &reference, "-o"])
        .arg(&back)
        .arg("--trust")
        .arg(&k.public));
    assert!(out.contains("signed by"), "{out}");
    let pulled = algobay_runtime::KitArchive::read_file(&back).unwrap();
    assert_eq!(pulled.digest(), k.digits.digest());
    assert_eq!(pulled.blobs, k.digits.blobs);
    // A second push sends only the manifest: every blob is there.
    let out = ok(algobay(&home)
        .args(["kit", "push"])
        .arg(&file)
        .args(["--oci", &reference]));
    assert!(out.contains("(0 of "), "{out}");
    // Without the team's key it is not trusted.
    let (code, _, err) = run(algobay(&home)
        .args(["kit", "pull", "--oci", &reference, "-o"])
        .arg(dir.path().join("untrusted.kit")));
    assert_eq!(code, 4, "{err}");

    // Copied to the enterprise's mirror by a standard tool, digests kept:
    // pulled by the manifest's digest there, it verifies.
    let copied = format!("{}/kits/algobay/digits-mlp:1.0.0", mirror.host());
    let status = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .arg(format!("docker://{copied}"))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let by_digest = format!(
        "{}/kits/algobay/digits-mlp@{manifest_digest}",
        mirror.host()
    );
    ok(algobay(&home)
        .args(["kit", "pull", "--oci", &by_digest, "-o"])
        .arg(dir.path().join("copy.kit"))
        .arg("--trust")
        .arg(&k.public));

    // A device of an enterprise with that mirror takes the kit from it.
    let rt = two_threads();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "site-1",
        &format!("kit_mirrors = [\"{}/kits\"]\n", mirror.host()),
    );
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let (code, answer) = agent.infer(&row9());
    assert_eq!(code, 200, "{answer}");
    let (_, metrics) = http(&agent.http, "GET", "/metrics", b"");
    let figure = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        figure("algobay_agent_blob_bytes_received_total"),
        0,
        "nothing came from the registry:\n{}",
        agent.log()
    );
    assert!(figure("algobay_agent_mirror_bytes_received_total") > 0);
    assert!(
        agent.log().contains("kit pulled from the mirror"),
        "{}",
        agent.log()
    );

    // A changed layer: the mirror's copy of the model now holds other bytes
    // of the same length. Pulled, it is refused for its digest.
    let (model, size) = k
        .digits
        .manifest
        .blobs
        .iter()
        .max_by_key(|(_, s)| **s)
        .map(|(d, s)| (d.to_string(), *s))
        .unwrap();
    let path = mirror.blob_file(&model);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, size);
    bytes[size as usize / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (code, _, err) = run(algobay(&home)
        .args(["kit", "pull", "--oci", &by_digest, "-o"])
        .arg(dir.path().join("tampered.kit"))
        .arg("--trust")
        .arg(&k.public));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains(&model) && err.contains("digest"), "{err}");
    assert!(!dir.path().join("tampered.kit").exists());

    // A changed kit manifest (the config) under the old signature: refused.
    let mut forged = k.digits.clone();
    forged.manifest.description = "a better model, honestly".into();
    forged.manifest_bytes = forged.manifest.canonical_json();
    let forged_file = dir.path().join("forged.kit");
    forged.write_file(&forged_file).unwrap();
    let forged_ref = format!("{}/vendor/algobay/digits-mlp:forged", central.host());
    ok(algobay(&home)
        .args(["kit", "push"])
        .arg(&forged_file)
        .args(["--oci", &forged_ref]));
    let (code, _, err) = run(algobay(&home)
        .args(["kit", "pull", "--oci", &forged_ref, "-o"])
        .arg(dir.path().join("forged-back.kit"))
        .arg("--trust")
        .arg(&k.public));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("signature"), "{err}");

    // Not an Algobay kit, and a reference that cannot be one: named.
    let (code, _, err) = run(algobay(&home)
        .args(["kit", "pull", "--oci", "localhost:1/Bad/Ref", "-o"])
        .arg(dir.path().join("x.kit")));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("lowercase"), "{err}");
}
