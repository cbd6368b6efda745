//! Restore at start, the sync loop, and a kit's way in: pull, verify, test
//! on the device, confirm, activate; fall back when it fails.

use super::*;

impl Agent {
    /// Reads a kit of a slot from the cache and verifies it against the device's trust roots.
    pub(super) fn archive(&self, slot: &Slot) -> Result<KitArchive> {
        let d: Digest = slot.digest.parse()?;
        let manifest_bytes = self.cache.read(&d)?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        let mut blobs = BTreeMap::new();
        for b in manifest.blobs.keys() {
            blobs.insert(*b, Arc::new(self.cache.read(b)?));
        }
        Ok(KitArchive {
            manifest,
            manifest_bytes,
            signatures: slot.signatures.clone(),
            blobs,
        })
    }

    pub(super) fn load(&self, slot: &Slot) -> Result<LoadedKit> {
        let verified = self.archive(slot)?.verify(&self.roots)?;
        Ok(self.runtime.load(&verified)?)
    }

    /// At start: serve the active kit, or the previous one if the active one
    /// no longer loads.
    pub(super) fn restore(&self) -> Result<()> {
        let mut st = self.state();
        let mut changed = false;
        if let Some(slot) = st.active.clone() {
            match self.load(&slot) {
                Ok(kit) => {
                    tracing::info!(kit = %slot.reference, digest = %slot.digest, "serving the active kit");
                    *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(Active::new(slot, kit)));
                    self.set_progress("active", String::new(), None);
                }
                Err(e) => {
                    tracing::error!(kit = %slot.reference, error = %e, "the active kit does not load; falling back");
                    st.active = None;
                    changed = true;
                }
            }
        }
        if st.active.is_none() {
            if let Some(slot) = st.previous.clone() {
                if let Ok(kit) = self.load(&slot) {
                    tracing::info!(kit = %slot.reference, "serving the previous kit");
                    *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(Active::new(slot.clone(), kit)));
                    st.active = Some(slot);
                    st.previous = None;
                    changed = true;
                }
            }
        }
        if changed {
            st.save(&self.cfg.data_dir)?;
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        }
        Ok(())
    }

    pub(super) async fn connect(&self) -> Result<Client> {
        Ok(Client::connect_device(
            &self.cfg.registry,
            self.server_ca.clone(),
            &self.identity.cert_pem,
            &self.identity.key_pem,
        )
        .await?)
    }

    /// Syncs until `shutdown` resolves: long-polls the desired state, applies
    /// it, reports. The registry being away only delays this; serving goes on.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = self.clone().sync_loop() => {}
            _ = shutdown => {}
        }
        if self.telemetry.is_some() {
            let a = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(t) = &a.telemetry {
                    t.flush();
                }
            })
            .await;
        }
    }

    pub(super) async fn sync_loop(self: Arc<Self>) {
        let max = Duration::from_secs(self.cfg.retry_max_seconds.max(1));
        let mut backoff = Duration::from_millis(500);
        let mut known = (String::new(), String::new());
        let mut last_sent: Option<DeviceState> = None;
        loop {
            let client = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "registry unreachable; serving on");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            };
            loop {
                let report = self.report();
                // A change of phase or kit is sent at once; figures every report_seconds.
                let news = last_sent.as_ref().is_none_or(|l| {
                    l.phase != report.phase
                        || l.active_digest != report.active_digest
                        || l.target_digest != report.target_digest
                        || l.deployment_id != report.deployment_id
                });
                let wait = if news {
                    0
                } else {
                    self.cfg.sync_wait_seconds.min(self.cfg.report_seconds)
                };
                match client.sync(Some(&report), (&known.0, &known.1), wait).await {
                    Ok(desired) => {
                        backoff = Duration::from_millis(500);
                        last_sent = Some(report);
                        known = (desired.kit_digest.clone(), desired.deployment_id.clone());
                        if let Err(e) = self.apply(&client, &desired).await {
                            tracing::warn!(error = %e, "update interrupted; it resumes on the next sync");
                            self.set_progress("pulling", format!("interrupted: {e}"), None);
                            break;
                        }
                        if !self.samples.is_empty() {
                            self.upload_samples(&client).await;
                        }
                        if let Some(t) = &self.telemetry {
                            // Spans held back while the link was down go now, traffic or not.
                            t.resend_held().await;
                        }
                    }
                    Err(e) => {
                        if matches!(&e, SdkError::Status { code, .. } if *code == tonic_code::Unauthenticated)
                        {
                            tracing::error!(error = %e, "the registry refuses this device");
                        } else {
                            tracing::warn!(error = %e, retry_in = ?backoff, "sync failed; serving on");
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
        }
    }

    /// Moves the device towards the desired state. Errors returned are the
    /// link's; a kit that fails is recorded, reported and not retried.
    pub async fn apply(self: &Arc<Self>, client: &Client, desired: &Desired) -> Result<()> {
        self.sampling_off
            .store(desired.sampling_off, Ordering::Relaxed);
        self.push_count
            .store(u64::from(desired.max_samples_per_push), Ordering::Relaxed);
        self.push_bytes
            .store(desired.max_push_bytes, Ordering::Relaxed);
        let st = self.state();
        if desired.kit_digest.is_empty() {
            if st.active.is_some() {
                let a = self.clone();
                tokio::task::spawn_blocking(move || a.deactivate())
                    .await
                    .map_err(|e| AgentError::Config(format!("task: {e}")))??;
            }
            self.set_progress("idle", String::new(), Some(desired));
            return Ok(());
        }
        if st
            .active
            .as_ref()
            .is_some_and(|s| s.digest == desired.kit_digest)
        {
            self.reconcile_shadow(desired).await;
            self.set_progress("active", String::new(), Some(desired));
            return Ok(());
        }
        if let Some(f) = st.failed(&desired.deployment_id, &desired.kit_digest) {
            self.set_progress("failed", f.reason.clone(), Some(desired));
            return Ok(());
        }
        match self.install(client, desired).await {
            Ok(()) => Ok(()),
            Err(e) if transient(&e) => Err(e),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(kit = %desired.kit_reference, reason = %reason, "kit failed on this device; keeping the current kit");
                let mut st = self.state();
                st.record_failure(Failure {
                    deployment_id: desired.deployment_id.clone(),
                    digest: desired.kit_digest.clone(),
                    reason: reason.clone(),
                });
                let data = self.cfg.data_dir.clone();
                let saved = st.clone();
                tokio::task::spawn_blocking(move || saved.save(&data))
                    .await
                    .map_err(|e| AgentError::Config(format!("task: {e}")))??;
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
                self.set_progress("failed", reason, Some(desired));
                Ok(())
            }
        }
    }

    pub(super) async fn install(
        self: &Arc<Self>,
        client: &Client,
        desired: &Desired,
    ) -> Result<()> {
        let started = Instant::now();
        self.set_progress("pulling", String::new(), Some(desired));
        let d: Digest = desired.kit_digest.parse()?;
        self.pull_from_mirrors(desired, &d).await;
        let got = self.cache.fetch(client, &d).await?;
        self.bytes_received.fetch_add(got, Ordering::Relaxed);
        let manifest = Manifest::from_json(&self.cache.read(&d)?)?;
        let mut sent = got;
        for b in manifest.blobs.keys() {
            let n = self.cache.fetch(client, b).await?;
            self.bytes_received.fetch_add(n, Ordering::Relaxed);
            sent += n;
        }
        tracing::info!(kit = %desired.kit_reference, bytes = sent, "kit pulled");
        self.set_progress("testing", String::new(), None);
        let slot = Slot {
            digest: desired.kit_digest.clone(),
            reference: desired.kit_reference.clone(),
            deployment_id: desired.deployment_id.clone(),
            signatures: desired.signatures.clone(),
            activated_unix: 0,
        };
        let a = self.clone();
        let kit = tokio::task::spawn_blocking(move || a.test(&slot).map(|k| (slot, k)))
            .await
            .map_err(|e| AgentError::Config(format!("task: {e}")))??;
        // Testing takes a while: if the registry meanwhile wants something else
        // (the deployment was rolled back), do not activate a kit nobody wants.
        // When the registry cannot be asked, the last word it gave holds.
        if let Ok(now) = client
            .sync(
                Some(&self.report()),
                (&desired.kit_digest, &desired.deployment_id),
                0,
            )
            .await
        {
            if now.kit_digest != desired.kit_digest {
                tracing::info!(kit = %desired.kit_reference, "no longer desired; not activated");
                self.set_progress("idle", String::new(), None);
                return Ok(());
            }
        }
        let a = self.clone();
        tokio::task::spawn_blocking(move || a.activate(kit.0, kit.1))
            .await
            .map_err(|e| AgentError::Config(format!("task: {e}")))??;
        tracing::info!(kit = %desired.kit_reference, seconds = started.elapsed().as_secs_f64(), "kit active");
        self.reconcile_shadow(desired).await;
        self.set_progress("active", String::new(), None);
        Ok(())
    }

    /// Takes the kit from the first of the enterprise's OCI mirrors that
    /// holds it (`<mirror>/<team>/<name>:<version>`, the kit's digest equal
    /// to the one the registry wants), into the blob cache; what it lacks then
    /// comes from the registry as before. A mirror that is down, holds another
    /// kit under the tag or serves a blob that does not match its digest is
    /// passed over with a warning. Signatures are judged as for any kit, when
    /// it is tested.
    async fn pull_from_mirrors(&self, desired: &Desired, want: &Digest) {
        if self.cfg.kit_mirrors.is_empty() || self.cache.has(want) {
            return;
        }
        let Some((name, version)) = desired.kit_reference.split_once('@') else {
            return;
        };
        let client = match algobay_sdk::oci::OciOptions::from_env()
            .and_then(algobay_sdk::oci::OciClient::new)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot make an OCI client; pulling from the registry");
                return;
            }
        };
        for mirror in &self.cfg.kit_mirrors {
            let text = format!("{}/{name}:{version}", mirror.trim_end_matches('/'));
            let r: algobay_sdk::oci::OciRef = match text.parse() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(mirror = %mirror, error = %e, "kit mirror skipped");
                    continue;
                }
            };
            match client.pull_kit(&r, algobay_sdk::no_progress()).await {
                Ok((kit, _)) if kit.digest() == *want => {
                    let cache = self.cache.clone();
                    let stored = tokio::task::spawn_blocking(move || -> Result<u64> {
                        let mut n = kit.manifest_bytes.len() as u64;
                        for (d, b) in &kit.blobs {
                            cache.put(d, b)?;
                            n += b.len() as u64;
                        }
                        cache.put(&kit.digest(), &kit.manifest_bytes)?;
                        Ok(n)
                    })
                    .await;
                    match stored {
                        Ok(Ok(n)) => {
                            self.mirror_bytes.fetch_add(n, Ordering::Relaxed);
                            tracing::info!(kit = %desired.kit_reference, mirror = %r, bytes = n, "kit pulled from the mirror");
                            return;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(mirror = %r, error = %e, "kit from the mirror not stored")
                        }
                        Err(e) => {
                            tracing::warn!(mirror = %r, error = %e, "kit from the mirror not stored")
                        }
                    }
                }
                Ok((kit, _)) => tracing::warn!(
                    mirror = %r,
                    found = %kit.digest(),
                    want = %want,
                    "the mirror holds another kit under that tag; pulling from the registry"
                ),
                Err(e) => {
                    tracing::warn!(mirror = %r, error = %e, "kit not taken from the mirror; pulling from the registry")
                }
            }
        }
    }

    /// Runs the kit the registry names as the shadow beside the active one
    /// (a canary's: the kit it replaced, still on the device as the previous
    /// kit), or stops running one it no longer names. A shadow that cannot be
    /// loaded only means no shadow answers; serving is not touched.
    pub(super) async fn reconcile_shadow(self: &Arc<Self>, desired: &Desired) {
        let Some(active) = self.active() else { return };
        let want = desired.shadow_digest.as_str();
        let have = active
            .shadow()
            .map(|s| s.digest.clone())
            .unwrap_or_default();
        if want == have {
            return;
        }
        if want.is_empty() || want == active.slot.digest {
            *active.shadow.write().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::info!("no shadow kit");
            return;
        }
        let st = self.state();
        let Some(slot) = st.previous.filter(|p| p.digest == want) else {
            tracing::warn!(shadow = %want, "the shadow kit is not the previous kit on this device; no shadow answers");
            return;
        };
        let a = self.clone();
        let loaded = tokio::task::spawn_blocking(move || a.load(&slot).map(|k| (slot, k))).await;
        match loaded {
            Ok(Ok((slot, kit))) => {
                tracing::info!(shadow = %slot.reference, "the replaced kit answers in the shadow");
                *active.shadow.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(ShadowKit {
                        digest: slot.digest,
                        kit,
                    }));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the shadow kit does not load; no shadow answers")
            }
            Err(e) => tracing::warn!(error = %e, "shadow task"),
        }
    }

    /// Verifies the kit against the device's trust roots, loads it and runs its golden samples.
    pub(super) fn test(&self, slot: &Slot) -> Result<LoadedKit> {
        let archive = self.archive(slot)?;
        let verified = archive.clone().verify(&self.roots)?;
        let kit = self.runtime.load(&verified)?;
        for o in run_golden(&kit, &archive)? {
            if let Some(f) = o.failure {
                return Err(algobay_runtime::Error::Golden {
                    index: o.index,
                    message: f,
                }
                .into());
            }
        }
        Ok(kit)
    }

    /// The commit point: before the state file is replaced the old kit is
    /// active, after it the new one; the old one becomes the fallback.
    pub(super) fn activate(&self, mut slot: Slot, kit: LoadedKit) -> Result<()> {
        slot.activated_unix = now_unix();
        let mut st = self.state();
        let old = st.active.take();
        if old.as_ref().is_some_and(|o| o.digest != slot.digest) {
            st.previous = old;
        }
        st.active = Some(slot.clone());
        st.save(&self.cfg.data_dir)?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(Active::new(slot, kit)));
        self.stats.reset();
        self.collect_garbage()?;
        Ok(())
    }

    pub(super) fn deactivate(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(a) = st.active.take() {
            st.previous = Some(a);
        }
        st.save(&self.cfg.data_dir)?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.stats.reset();
        tracing::info!("no kit is desired; stopped serving");
        Ok(())
    }

    /// Deletes cached blobs that neither the active nor the previous kit uses,
    /// once older than the grace period.
    pub fn collect_garbage(&self) -> Result<u64> {
        let st = self.state();
        let mut keep = BTreeSet::new();
        for slot in st.active.iter().chain(st.previous.iter()) {
            let d: Digest = slot.digest.parse()?;
            keep.insert(d);
            if let Ok(bytes) = self.cache.read(&d) {
                if let Ok(m) = Manifest::from_json(&bytes) {
                    keep.extend(m.blobs.keys().copied());
                }
            }
        }
        // A download in progress is younger than the grace period, so it stays.
        self.cache
            .gc(&keep, Duration::from_secs(self.cfg.gc_grace_seconds))
    }
}
