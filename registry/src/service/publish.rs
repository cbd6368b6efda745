//! Publishing models, tools and kits: validated, stored atomically, a kit's
//! golden samples run within the registry's ceilings.

use super::*;

impl Registry {
    // ------------------------------------------------------------ publishing

    pub(super) fn owner_check(&self, p: &Principal, name: &str) -> Result<Team> {
        validate_name("name", name).map_err(|e| RegistryError::invalid("name", e.to_string()))?;
        let team = name.split('/').next().unwrap_or_default();
        if !p.may_publish_for(team) {
            return Err(RegistryError::PermissionDenied(format!(
                "`{name}` belongs to team `{team}`, which this token does not act for"
            )));
        }
        self.team(team)?
            .ok_or_else(|| RegistryError::NotFound(format!("team `{team}`")))
    }

    /// A blob the publisher may use: one it may read (what another team uploaded
    /// and never published is as absent to it as what nobody uploaded).
    pub(super) fn blob(&self, p: &Principal, field: &str, d: &Digest) -> Result<Vec<u8>> {
        if !self.sees_in_catalog(p, d)? {
            return Err(RegistryError::FailedPrecondition(format!(
                "{field} {d} has not been uploaded"
            )));
        }
        self.blobs.read_all(d)
    }

    /// Checks the blobs sent inline with a publish: each named by the request,
    /// small, and hashing to its digest. Returns them by digest.
    pub(super) fn inline_blobs(
        &self,
        named: &[Digest],
        inline: &[(String, Vec<u8>)],
    ) -> Result<BTreeMap<Digest, Vec<u8>>> {
        use crate::blobs::{MAX_INLINE_BLOB, MAX_INLINE_TOTAL};
        let total: usize = inline.iter().map(|(_, b)| b.len()).sum();
        if total > MAX_INLINE_TOTAL {
            return Err(RegistryError::TooLarge(format!(
                "blobs: {total} bytes inline, over the limit of {MAX_INLINE_TOTAL}; upload larger blobs first"
            )));
        }
        let mut out = BTreeMap::new();
        for (i, (d, b)) in inline.iter().enumerate() {
            let field = format!("blobs[{i}]");
            let d = digest(&format!("{field}.digest"), d)?;
            if !named.contains(&d) {
                return Err(RegistryError::invalid(
                    field,
                    format!("{d} is not a blob this publish names (its digest, or its config's)"),
                ));
            }
            if b.len() > MAX_INLINE_BLOB {
                return Err(RegistryError::TooLarge(format!(
                    "{field}: {} bytes, over the inline limit of {MAX_INLINE_BLOB}; upload it first",
                    b.len()
                )));
            }
            if Digest::of(b) != d {
                return Err(RegistryError::invalid(
                    field,
                    format!("the bytes hash to {}, not {d}", Digest::of(b)),
                ));
            }
            out.insert(d, b.clone());
        }
        Ok(out)
    }

    /// The records that store inline blobs with their artifact: those the blob
    /// store does not already hold.
    pub(super) fn inline_records(
        &self,
        inline: BTreeMap<Digest, Vec<u8>>,
    ) -> Result<Vec<(Tree, Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for (d, b) in inline {
            if !self.blobs.has(&d)? {
                out.push((Tree::InlineBlobs, d.to_string().into_bytes(), b));
            }
        }
        Ok(out)
    }

    /// Stores a new version; the same content again is a no-op, other content is refused.
    pub(super) fn insert(&self, a: Artifact) -> Result<Artifact> {
        self.insert_with(Vec::new(), a)
    }

    /// [`Self::insert`], writing `extra` records in the same atomic batch.
    pub(crate) fn insert_with(
        &self,
        extra: Vec<(Tree, Vec<u8>, Vec<u8>)>,
        a: Artifact,
    ) -> Result<Artifact> {
        let key = a.key();
        let marks = self.content_marks(&a)?;
        let mut batch = Batch::new()
            .check(Tree::Artifacts, key.as_bytes(), None)
            .put(Tree::Artifacts, key.as_bytes(), json(&a))
            .note(self.note_artifact(&key));
        for (tree, k, v) in extra.into_iter().chain(marks) {
            batch = batch.put(tree, k, v);
        }
        for d in a
            .blobs
            .iter()
            .chain(std::iter::once(&a.digest))
            .collect::<BTreeSet<_>>()
        {
            batch = batch.put(Tree::Digests, format!("{d}/{key}"), Vec::new());
        }
        if self.kv.commit(batch)? {
            self.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .upsert(a.clone());
            return Ok(a);
        }
        let existing: Artifact = parse(
            "artifact",
            &self
                .kv
                .get(Tree::Artifacts, key.as_bytes())?
                .ok_or_else(|| RegistryError::Storage("artifact vanished".into()))?,
        )?;
        if existing.digest == a.digest {
            return Ok(existing);
        }
        Err(RegistryError::AlreadyExists(format!(
            "{} {} is already published with other content ({}); versions are immutable, publish a new version",
            a.kind.as_str(),
            a.reference(),
            existing.digest
        )))
    }

    /// Publishes a model: the registry reads the model file itself for its signature.
    pub fn publish_model(&self, p: &Principal, spec: ModelSpec) -> Result<Artifact> {
        self.owner_check(p, &spec.name)?;
        check_version(&spec.version)?;
        check_text(
            &spec.description,
            &spec.card,
            &spec.license,
            &spec.industries,
            &spec.tags,
        )?;
        for (field, v) in [
            ("domain", &spec.domain),
            ("task", &spec.task),
            ("architecture", &spec.architecture),
            ("parent", &spec.parent),
        ] {
            check_len(field, v, text::WORD)?;
        }
        if spec.metrics.len() > text::LIST {
            return Err(RegistryError::TooLarge(format!(
                "metrics: {} entries, over the limit of {}",
                spec.metrics.len(),
                text::LIST
            )));
        }
        for (k, v) in &spec.metrics {
            check_len("metrics key", k, text::ITEM)?;
            if !v.is_finite() {
                return Err(RegistryError::invalid(
                    format!("metrics[{k}]"),
                    "must be a finite number",
                ));
            }
        }
        let d = digest("digest", &spec.digest)?;
        if spec.domain.is_empty() {
            return Err(RegistryError::invalid(
                "domain",
                "is required (vision, speech, nlp, tabular, ...)",
            ));
        }
        if spec.task.is_empty() {
            return Err(RegistryError::invalid(
                "task",
                "is required (classification, detection, ocr, vad, embedding, ...)",
            ));
        }
        let mut named = vec![d];
        if !spec.config_digest.is_empty() {
            named.push(digest("config_digest", &spec.config_digest)?);
        }
        let inline = self.inline_blobs(&named, &spec.inline)?;
        let blob = |field: &str, d: &Digest| match inline.get(d) {
            Some(b) => Ok(b.clone()),
            None => self.blob(p, field, d),
        };
        let bytes = blob("model", &d)?;
        if bytes.is_empty() {
            return Err(RegistryError::invalid("digest", "the model file is empty"));
        }
        let step = spec.name.rsplit('/').next().unwrap_or("model").to_owned();
        let (format, signature, mut blobs) = if spec.architecture.is_empty() {
            let m = self
                .runtime
                .ort()
                .map_err(|e| RegistryError::Storage(e.to_string()))?
                .model(&step, &bytes)?;
            ("onnx", m.signature().clone(), vec![d])
        } else {
            let mut assets = BTreeMap::new();
            let mut blobs = vec![d];
            if !spec.config_digest.is_empty() {
                let c = digest("config_digest", &spec.config_digest)?;
                assets.insert("config".to_string(), blob("config", &c)?);
                blobs.push(c);
            }
            let lookup = |n: &str| assets.get(n).cloned();
            let m = algobay_runtime::candle::CandleModel::load(
                &step,
                &spec.architecture,
                &bytes,
                &serde_json::Value::Null,
                &lookup,
            )?;
            ("safetensors", m.signature().clone(), blobs)
        };
        blobs.dedup();
        self.insert_with(
            self.inline_records(inline)?,
            Artifact {
                description: spec.description,
                license: spec.license,
                industries: spec.industries,
                tags: spec.tags,
                domain: spec.domain,
                task: spec.task,
                architecture: spec.architecture,
                inputs: signature.inputs,
                outputs: signature.outputs,
                card: spec.card,
                metrics: spec.metrics,
                parent: spec.parent,
                blobs,
                published_unix: self.clock.now_unix(),
                published_by: p.token_id.clone(),
                ..Artifact::new(
                    Kind::Model,
                    spec.name,
                    spec.version,
                    d,
                    bytes.len() as u64,
                    format,
                )
            },
        )
    }

    /// Publishes a tool: its WASM must compile and implement the stage interface.
    pub fn publish_tool(&self, p: &Principal, spec: ToolSpec) -> Result<Artifact> {
        self.owner_check(p, &spec.name)?;
        check_version(&spec.version)?;
        check_text(
            &spec.description,
            &spec.card,
            &spec.license,
            &spec.industries,
            &spec.tags,
        )?;
        if !TOOL_KINDS.contains(&spec.tool_kind.as_str()) {
            return Err(RegistryError::invalid(
                "tool_kind",
                format!(
                    "`{}` must be one of {}",
                    shown(&spec.tool_kind),
                    TOOL_KINDS.join(", ")
                ),
            ));
        }
        let d = digest("digest", &spec.digest)?;
        let bytes = self.blob(p, "tool", &d)?;
        let runner = self.runtime.stages().prepare(
            &spec.name,
            &bytes,
            &serde_json::json!({}),
            Vec::new(),
            Limits::default(),
        )?;
        let contract = runner.contract().clone();
        self.insert(Artifact {
            description: spec.description,
            license: spec.license,
            industries: spec.industries,
            tags: spec.tags,
            tool_kind: spec.tool_kind,
            inputs: contract.inputs,
            outputs: contract.outputs,
            card: spec.card,
            blobs: vec![d],
            published_unix: self.clock.now_unix(),
            published_by: p.token_id.clone(),
            ..Artifact::new(
                Kind::Tool,
                spec.name,
                spec.version,
                d,
                bytes.len() as u64,
                "wasm",
            )
        })
    }

    /// Publishes a kit: signed by its team, every blob uploaded, golden samples passing.
    pub fn publish_kit(
        &self,
        p: &Principal,
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        private_to: &str,
        cancel: &Cancel,
    ) -> Result<Artifact> {
        if manifest_bytes.len() > self.ceilings.max_manifest_bytes {
            return Err(RegistryError::TooLarge(format!(
                "manifest: {} bytes, over the registry's limit of {}",
                manifest_bytes.len(),
                self.ceilings.max_manifest_bytes
            )));
        }
        if signatures.len() > 16 {
            return Err(RegistryError::TooLarge(format!(
                "signatures: {}, over the limit of 16",
                signatures.len()
            )));
        }
        let manifest = Manifest::from_json(&manifest_bytes)?;
        self.ceilings.check_kit(&manifest, manifest_bytes.len())?;
        check_text(
            &manifest.description,
            "",
            &manifest.license,
            &manifest.industries,
            &[],
        )?;
        if !private_to.is_empty()
            && self
                .kv
                .get(Tree::Enterprises, private_to.as_bytes())?
                .is_none()
        {
            return Err(RegistryError::NotFound(format!(
                "enterprise `{}` (private_to)",
                shown(private_to)
            )));
        }
        if manifest.canonical_json() != manifest_bytes {
            return Err(RegistryError::invalid(
                "manifest",
                "is not in canonical form (sorted keys, no white space)",
            ));
        }
        let team = self.owner_check(p, &manifest.name)?;
        let mut roots = TrustRoots::new();
        roots.trust(
            team.signing_key
                .parse()
                .map_err(|e: algobay_runtime::Error| RegistryError::Storage(e.to_string()))?,
        );
        roots.verify(&manifest_bytes, &signatures).map_err(|e| {
            RegistryError::Rejected(format!(
                "{e} (kits must be signed with team `{}`'s key)",
                team.name
            ))
        })?;
        // Another tenant's content is refused by name, before anything else.
        self.check_content(manifest.blobs.keys(), private_to, &|| {
            crate::access::describe(
                "kit",
                &format!("{}@{}", manifest.name, manifest.version),
                private_to,
            )
        })?;
        let mut blobs = BTreeMap::new();
        for (d, size) in &manifest.blobs {
            let stat = self.blobs.stat(d)?;
            match stat
                .size
                .filter(|_| self.sees_in_catalog(p, d).unwrap_or(false))
            {
                None => {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "blob {d} named by the kit has not been uploaded"
                    )))
                }
                Some(s) if s != *size => {
                    return Err(RegistryError::invalid(
                        "manifest",
                        format!("blob {d} is {s} bytes, the manifest says {size}"),
                    ))
                }
                Some(_) => {}
            }
            blobs.insert(*d, Arc::new(self.blobs.read_all(d)?));
        }
        let archive = KitArchive {
            manifest: manifest.clone(),
            manifest_bytes: manifest_bytes.clone(),
            signatures: signatures.clone(),
            blobs,
        };
        let kit_digest = archive.digest();
        let verified = archive.clone().verify(&roots)?;
        self.check_golden(&verified, &archive, cancel)?;
        // The registry's countersignature: it checked the team's signature, the
        // blobs and the golden samples. Devices may hold its key as a trust root.
        let mut signatures = signatures;
        if let Some(k) = &self.signing_key {
            let own = k.sign(&manifest_bytes);
            signatures.retain(|s| s.key != own.key);
            signatures.push(own);
        }
        self.blobs.put(&kit_digest, &manifest_bytes)?;
        let port = |k: &algobay_runtime::manifest::KitPort| algobay_runtime::manifest::Port {
            name: k.name.clone(),
            ty: k.ty.clone(),
        };
        let size = manifest_bytes.len() as u64 + manifest.blobs.values().sum::<u64>();
        self.insert(Artifact {
            description: manifest.description.clone(),
            license: manifest.license.clone(),
            industries: manifest.industries.clone(),
            scenario: manifest.scenario.clone(),
            inputs: manifest.inputs.iter().map(port).collect(),
            outputs: manifest.outputs.iter().map(port).collect(),
            blobs: manifest.blobs.keys().copied().collect(),
            signatures,
            published_unix: self.clock.now_unix(),
            published_by: p.token_id.clone(),
            private_to: private_to.to_owned(),
            ..Artifact::new(
                Kind::Kit,
                manifest.name.clone(),
                manifest.version.clone(),
                kit_digest,
                size,
                "kit",
            )
        })
    }

    /// Runs a kit's golden samples in a bounded pool of slots, within the
    /// ceilings' time budget, stopping when the caller goes away.
    fn check_golden(
        &self,
        verified: &algobay_runtime::archive::VerifiedKit,
        archive: &KitArchive,
        cancel: &Cancel,
    ) -> Result<()> {
        let c = &self.ceilings;
        let team = archive.manifest.name.split('/').next().unwrap_or_default();
        let _turn = self.golden.take(
            team,
            c.golden_slots,
            c.golden_team_slots,
            c.golden_wait,
            &|| cancel.is_cancelled(),
        )?;
        if cancel.is_cancelled() {
            return Err(RegistryError::Cancelled("the caller went away".into()));
        }
        let stop = algobay_runtime::wasm::StopSignal {
            cancelled: Some(cancel.0.clone()),
            deadline: Some((
                std::time::Instant::now() + c.golden_budget,
                format!(
                    "the golden samples took over the registry's budget of {} s",
                    c.golden_budget.as_secs()
                ),
            )),
        };
        let loaded = self.runtime.load(verified)?;
        for outcome in run_golden_checked(&loaded, archive, &stop)? {
            if let Some(f) = outcome.failure {
                return Err(RegistryError::Rejected(format!(
                    "golden sample {} failed: {f}",
                    outcome.index
                )));
            }
        }
        Ok(())
    }
}
