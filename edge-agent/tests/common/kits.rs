//! The example kits the tests deploy, built once per test binary with one
//! team key, and the registry and devices seeded with them.

use super::*;

pub struct Kits {
    pub key: PathBuf,
    pub public: PathBuf,
    pub digits: KitArchive,
    pub digits_next: KitArchive,
    pub ocr: KitArchive,
    pub builder: KitBuilder,
}

/// Builds example kits with the team key.
pub struct KitBuilder {
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl KitBuilder {
    /// An example kit at another version, its Kitfile edited by `edits`
    /// (pairs of text to find and replace, applied after the paths are made absolute).
    pub fn build(&self, kit: &str, version: &str, edits: &[(&str, &str)]) -> KitArchive {
        let src = root().join("examples/kits").join(kit);
        let d = self.dir.path().join(format!("{kit}-{version}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut text = std::fs::read_to_string(src.join("Kitfile"))
            .unwrap()
            .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
            .replace("\"models/", &format!("\"{}/models/", src.display()))
            .replace("\"samples/", &format!("\"{}/samples/", src.display()))
            .replace(
                "\"../../stages/",
                &format!("\"{}/examples/stages/", root().display()),
            );
        for (from, to) in edits {
            assert!(text.contains(from), "`{from}` is not in the {kit} Kitfile");
            text = text.replace(from, to);
        }
        std::fs::write(d.join("Kitfile"), text).unwrap();
        package(&d, &self.key)
    }

    /// A folder for files the kits are built from.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

/// Builds the kit of the Kitfile in `dir`, signed with the key in the file `key`.
pub fn package(dir: &Path, key: &Path) -> KitArchive {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    algobay_runtime::kitfile::Packager::new(&digits::runtime(), cargo)
        .build(dir, &SecretKey::read(key).unwrap(), &|_| {})
        .unwrap()
}

/// A trainer working as `team` with the kits' team key, caching under `work_dir`.
pub fn trainer(
    team: &Client,
    work_dir: &Path,
    holder: &str,
    lease_seconds: u32,
) -> algobay_sdk::trainer::Trainer {
    algobay_sdk::trainer::Trainer::new(
        team.clone(),
        SecretKey::read(&kits().key).unwrap(),
        digits::runtime(),
        algobay_sdk::trainer::TrainerOptions {
            holder: holder.into(),
            lease_seconds,
            work_dir: work_dir.to_path_buf(),
        },
    )
}

/// The example digits kit (1.0.0 and 1.0.1) and OCR kit, signed by one team
/// key; built once per test binary.
pub fn kits() -> &'static Kits {
    static KITS: OnceLock<Kits> = OnceLock::new();
    KITS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate();
        let key_path = dir.path().join("team.key");
        std::fs::write(&key_path, key.to_text()).unwrap();
        let public = dir.path().join("team.key.pub");
        std::fs::write(&public, key.public().to_string()).unwrap();
        let builder = KitBuilder {
            key: key_path.clone(),
            dir,
        };
        Kits {
            key: key_path,
            public,
            digits: builder.build("digits", "1.0.0", &[]),
            digits_next: builder.build("digits", "1.0.1", &[]),
            ocr: builder.build("ocr", "1.0.0", &[]),
            builder,
        }
    })
}

/// A registry with team `algobay` (the kits' key), enterprises `acme` and
/// `globex`, and the kits pushed; returns the enterprise tokens.
pub async fn seed(reg: &RegistryProc, push_ocr: bool) -> (String, String) {
    let k = kits();
    let op = reg.client(&reg.operator).await;
    let public = std::fs::read_to_string(&k.public).unwrap();
    op.create_team("algobay", "", public.trim()).await.unwrap();
    let (_, team) = op.create_token("team", "algobay", 0).await.unwrap();
    let team = reg.client(&team).await;
    for kit in [&k.digits, &k.digits_next] {
        team.push_kit(kit, algobay_sdk::no_progress())
            .await
            .unwrap();
    }
    if push_ocr {
        team.push_kit(&k.ocr, algobay_sdk::no_progress())
            .await
            .unwrap();
    }
    op.create_enterprise("acme", "Acme", vec!["logistics".into()])
        .await
        .unwrap();
    op.create_enterprise("globex", "Globex", vec![])
        .await
        .unwrap();
    let (_, acme) = op.create_token("enterprise", "acme", 0).await.unwrap();
    let (_, globex) = op.create_token("enterprise", "globex", 0).await.unwrap();
    (acme, globex)
}

/// Pushes another kit as team `algobay` (whose key signed it).
pub async fn push_as_algobay(reg: &RegistryProc, kit: &KitArchive) {
    let op = reg.client(&reg.operator).await;
    let (_, team) = op.create_token("team", "algobay", 0).await.unwrap();
    reg.client(&team)
        .await
        .push_kit(kit, algobay_sdk::no_progress())
        .await
        .unwrap();
}

/// The digits sample that must come out as a 9.
pub fn row9() -> Vec<u8> {
    std::fs::read(root().join("examples/kits/digits/samples/row9.json")).unwrap()
}

/// Every device at once, no soak.
pub fn all() -> algobay_sdk::fleet::RolloutPolicy {
    algobay_sdk::fleet::RolloutPolicy {
        canary_share: 1.0,
        soak_seconds: 0,
        ..Default::default()
    }
}

/// An agent enrolled in acme, trusting the kits' team key.
pub fn device(
    rt: &tokio::runtime::Runtime,
    reg: &RegistryProc,
    acme: &algobay_sdk::Client,
    dir: &std::path::Path,
    name: &str,
    extra: &str,
) -> AgentProc {
    let (_, token) = rt
        .block_on(acme.create_enrollment_token("", std::collections::BTreeMap::new(), 0))
        .unwrap();
    AgentProc::start(
        &dir.join("agent"),
        &reg.url(),
        &reg.ca_pem,
        &token,
        &kits().public,
        &DeviceSpec {
            name,
            labels: &[],
            stage_memory_mb: None,
            extra,
        },
    )
}

/// The kit every test that wants hard examples serves.
pub const KEEN: &str = "algobay/digits-mlp@1.1.0";

/// The digits kit at 1.1.0 with a sampling threshold of 1.01 (every answer
/// scores under it: every request is a hard example), pushed; and an agent of
/// acme named `keen`, with `extra` in its agent.toml, serving it.
pub fn keen_agent(
    rt: &tokio::runtime::Runtime,
    reg: &RegistryProc,
    acme: &algobay_sdk::Client,
    dir: &std::path::Path,
    extra: &str,
) -> AgentProc {
    let keen = kits().builder.build(
        "digits",
        "1.1.0",
        &[("threshold = 0.9", "threshold = 1.01")],
    );
    rt.block_on(push_as_algobay(reg, &keen));
    let agent = device(rt, reg, acme, dir, "keen", extra);
    serve(rt, acme, &agent, KEEN, 120);
    agent
}

/// Deploys `kit` to all of acme's devices and waits up to `secs` until `agent` serves it.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    acme: &algobay_sdk::Client,
    agent: &AgentProc,
    kit: &str,
    secs: u64,
) {
    rt.block_on(acme.create_deployment("", kit, std::collections::BTreeMap::new(), all()))
        .unwrap();
    wait_for(secs, kit, || agent.active().filter(|r| r == kit));
}
