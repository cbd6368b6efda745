//! Reading the catalog: get, search, yank, coverage.

use super::*;
use std::collections::HashMap;

impl Registry {
    // ------------------------------------------------------------ reading

    /// [`Self::get`] for a caller: what it may not see is not found.
    pub fn get_for(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        match self.get(reference, kind) {
            Ok(a) if p.may_see(&a) => Ok(a),
            Ok(_) => Err(RegistryError::NotFound(shown(reference))),
            Err(e) => Err(e),
        }
    }

    /// By `team/name@version` (with a kind, or the only artifact of that reference) or by digest.
    pub fn get(&self, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        check_len("reference", reference, 256)?;
        if reference.starts_with("sha256:") {
            let d = digest("reference", reference)?;
            let prefix = format!("{d}/");
            let keys = self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())?;
            for (k, _) in keys {
                let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                if let Some(v) = self.kv.get(Tree::Artifacts, key.as_bytes())? {
                    let a: Artifact = parse("artifact", &v)?;
                    if a.digest == d && kind.is_none_or(|k| k == a.kind) {
                        return Ok(a);
                    }
                }
            }
            return Err(RegistryError::NotFound(format!(
                "no artifact has digest {d}"
            )));
        }
        let (name, version) = reference.split_once('@').ok_or_else(|| {
            RegistryError::invalid(
                "reference",
                format!(
                    "`{}` must be `team/name@version` or a digest",
                    shown(reference)
                ),
            )
        })?;
        validate_name("reference", name)
            .map_err(|e| RegistryError::invalid("reference", e.to_string()))?;
        let kinds = match kind {
            Some(k) => vec![k],
            None => vec![Kind::Model, Kind::Tool, Kind::Kit, Kind::Dataset],
        };
        let mut found = Vec::new();
        for k in kinds {
            if let Some(v) = self
                .kv
                .get(Tree::Artifacts, artifact_key(k, name, version).as_bytes())?
            {
                found.push(parse::<Artifact>("artifact", &v)?);
            }
        }
        match found.len() {
            0 => Err(RegistryError::NotFound(shown(reference))),
            1 => Ok(found.remove(0)),
            _ => Err(RegistryError::invalid(
                "kind",
                format!("`{}` names several kinds of artifact; give the kind (model, tool, kit or dataset; `--kind` on the command line)", shown(reference)),
            )),
        }
    }

    /// Every version of an artifact the caller may see, newest first.
    pub fn versions(&self, p: &Principal, kind: Kind, name: &str) -> Result<Vec<Artifact>> {
        validate_name("name", name).map_err(|e| RegistryError::invalid("name", e.to_string()))?;
        let prefix = format!("{}/{name}/", kind.as_str());
        let mut out: Vec<Artifact> = Vec::new();
        for (_, v) in self.kv.scan_prefix(Tree::Artifacts, prefix.as_bytes())? {
            let a: Artifact = parse("artifact", &v)?;
            if a.name == name && p.may_see(&a) {
                out.push(a);
            }
        }
        out.sort_by(|a, b| {
            match (
                semver::Version::parse(&a.version),
                semver::Version::parse(&b.version),
            ) {
                (Ok(x), Ok(y)) => y.cmp(&x),
                _ => b.version.cmp(&a.version),
            }
        });
        Ok(out)
    }

    /// The artifacts the caller may see whose parent is `reference`
    /// (`team/name@version`): the versions retrained from it.
    pub fn children(&self, p: &Principal, reference: &str) -> Result<Vec<Artifact>> {
        Ok(self
            .index()
            .all()
            .filter(|a| a.parent == reference && p.may_see(a))
            .cloned()
            .collect())
    }

    pub fn search(&self, q: &Query) -> Result<Page> {
        if !q.page_token.is_empty() && q.page_token.parse::<u32>().is_err() {
            return Err(RegistryError::invalid(
                "page_token",
                format!("`{}` is not one this registry issued", shown(&q.page_token)),
            ));
        }
        if q.text.len() > 256 {
            return Err(RegistryError::TooLarge(format!(
                "text: {} bytes, over the limit of 256",
                q.text.len()
            )));
        }
        Ok(self.index().search(q))
    }

    /// Artifacts the caller may see that name `d` (as their file, a blob or a
    /// kit's manifest), as `team/name@version`, of the given kinds.
    fn seen_with(&self, p: &Principal, d: &Digest, kinds: &[Kind]) -> Result<Vec<String>> {
        let prefix = format!("{d}/");
        let mut out = Vec::new();
        for (k, _) in self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())? {
            if let Some(v) = self.kv.get(Tree::Artifacts, &k[prefix.len()..])? {
                let a: Artifact = parse("artifact", &v)?;
                if kinds.contains(&a.kind) && p.may_see(&a) {
                    out.push(format!(
                        "{}@{}{}",
                        a.name,
                        a.version,
                        if a.yanked { " (yanked)" } else { "" }
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// For a kit, its steps with the models and tools whose files they run and
    /// its golden samples; for a model or tool, the kits that use its file.
    pub fn relations(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
    ) -> Result<Relations> {
        let a = self.get_for(p, reference, kind)?;
        if a.kind != Kind::Kit {
            let used_by = self.seen_with(p, &a.digest, &[Kind::Kit])?;
            return Ok(Relations {
                used_by,
                ..Default::default()
            });
        }
        let m = Manifest::from_json(&self.blobs.read_all(&a.digest)?)?;
        let size = |d: &Digest| m.blobs.get(d).copied().unwrap_or(0);
        let ports = |ps: &[algobay_runtime::manifest::Port]| {
            ps.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect()
        };
        let mut steps = Vec::with_capacity(m.steps.len());
        for s in &m.steps {
            let (kind, digest, of) = match &s.kind {
                StepKind::Stage { wasm, .. } => ("stage", *wasm, [Kind::Tool]),
                StepKind::Onnx { model, .. } => ("onnx", *model, [Kind::Model]),
                StepKind::Candle { weights, .. } => ("candle", *weights, [Kind::Model]),
            };
            let c = s.contract();
            steps.push(StepUse {
                step: s.name.clone(),
                kind: kind.into(),
                digest,
                size: size(&digest),
                artifacts: self.seen_with(p, &digest, &of)?,
                inputs: ports(&c.inputs),
                outputs: ports(&c.outputs),
            });
        }
        let golden = m
            .golden
            .iter()
            .map(|g| GoldenUse {
                inputs: g
                    .inputs
                    .iter()
                    .map(|(k, d)| (k.clone(), format!("{d} ({} bytes)", size(d))))
                    .collect(),
                expected: format!("{} ({} bytes)", g.expected, size(&g.expected)),
                tolerance: match (g.tolerance.abs, g.tolerance.cosine) {
                    (None, None) => "exact".into(),
                    (Some(a), None) => format!("abs {a}"),
                    (None, Some(c)) => format!("cosine {c}"),
                    (Some(a), Some(c)) => format!("abs {a}, cosine {c}"),
                },
            })
            .collect();
        Ok(Relations {
            steps,
            golden,
            used_by: Vec::new(),
        })
    }

    /// Hides a version from search (or shows it again); it stays downloadable.
    pub fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact> {
        let a = self.get_for(p, reference, kind)?;
        if !p.may_publish_for(a.team()) {
            return Err(RegistryError::PermissionDenied(format!(
                "`{}` belongs to team `{}`",
                a.name,
                a.team()
            )));
        }
        let key = a.key();
        let old = json(&a);
        let mut b = a.clone();
        b.yanked = !undo;
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Artifacts, key.as_bytes(), Some(old))
                .put(Tree::Artifacts, key.as_bytes(), json(&b))
                .note(self.note_artifact(&key)),
        )? {
            return Err(RegistryError::FailedPrecondition(format!(
                "{reference} changed meanwhile; try again"
            )));
        }
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .upsert(b.clone());
        Ok(b)
    }

    /// The operator's counts (published, not yanked).
    pub fn coverage(&self) -> Result<Coverage> {
        self.coverage_of(false)
    }

    /// The counts a team or enterprise sees: of the public catalog only (a
    /// kit made for one enterprise, its scenario included, is that
    /// enterprise's business), without enterprise, served or device counts.
    pub fn coverage_public(&self) -> Result<Coverage> {
        Ok(self.coverage_of(true)?.for_tenants())
    }

    fn coverage_of(&self, public_only: bool) -> Result<Coverage> {
        let mut c = Coverage::default();
        let mut publishing = BTreeSet::new();
        let mut industries = BTreeSet::new();
        let shown = |a: &&Artifact| !a.yanked && (!public_only || a.private_to.is_empty());
        for a in self.index().all().filter(shown) {
            publishing.insert(a.team().to_owned());
            industries.extend(a.industries.iter().cloned());
            match a.kind {
                Kind::Model => {
                    c.models += 1;
                    *c.models_by_domain.entry(a.domain.clone()).or_default() += 1;
                    *c.models_by_task.entry(a.task.clone()).or_default() += 1;
                }
                Kind::Tool => {
                    c.tools += 1;
                    *c.tools_by_kind.entry(a.tool_kind.clone()).or_default() += 1;
                }
                Kind::Dataset => c.datasets += 1,
                Kind::Kit => {
                    c.kits += 1;
                    *c.kits_by_scenario.entry(a.scenario.clone()).or_default() += 1;
                    for i in &a.industries {
                        *c.kits_by_industry.entry(i.clone()).or_default() += 1;
                    }
                }
            }
        }
        c.publishing_teams = publishing.len() as u64;
        c.industries = industries.len() as u64;
        // Growth: what was published (and is not yanked), day by day, cumulated.
        let mut days: BTreeMap<i64, [u64; 3]> = BTreeMap::new();
        for a in self
            .index()
            .all()
            .filter(|a| !a.yanked && a.private_to.is_empty())
        {
            let slot = match a.kind {
                Kind::Model => 0,
                Kind::Tool => 1,
                Kind::Kit => 2,
                Kind::Dataset => continue,
            };
            days.entry(a.published_unix.div_euclid(86_400)).or_default()[slot] += 1;
        }
        let mut sum = [0u64; 3];
        for (day, n) in days {
            for i in 0..3 {
                sum[i] += n[i];
            }
            c.growth.push((day, sum[0], sum[1], sum[2]));
        }
        self.coverage_slices(&mut c, public_only)?;
        c.teams = self.kv.scan_prefix(Tree::Teams, b"")?.len() as u64;
        c.enterprises = self.kv.scan_prefix(Tree::Enterprises, b"")?.len() as u64;
        Ok(c)
    }

    /// Coverage per industry and per domain, and who is served: an enterprise
    /// counts once one of its devices (enrolled, not revoked) runs a kit made
    /// for one of the enterprise's industries, has reported serving requests
    /// on it, and its OpenTelemetry figures for that kit reached the registry;
    /// an industry counts once it has such an enterprise. A kit's own
    /// industry tags count nothing on their own.
    fn coverage_slices(&self, c: &mut Coverage, public_only: bool) -> Result<()> {
        #[derive(Default)]
        struct Acc {
            slice: CoverageSlice,
            teams: BTreeSet<String>,
            served: BTreeSet<String>,
        }
        let mut by_industry: BTreeMap<String, Acc> = BTreeMap::new();
        let mut by_domain: BTreeMap<String, Acc> = BTreeMap::new();
        let index = self.index();
        let live: Vec<&Artifact> = index
            .all()
            .filter(|a| !a.yanked && (!public_only || a.private_to.is_empty()))
            .collect();
        let model_domain: HashMap<Digest, &str> = live
            .iter()
            .filter(|a| a.kind == Kind::Model && !a.domain.is_empty())
            .map(|a| (a.digest, a.domain.as_str()))
            .collect();
        // kit digest → (domains, industries)
        let mut kits: HashMap<Digest, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
        // tool digest → (domains, industries) of the kits using it
        let mut tool_use: HashMap<Digest, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
        let tools: HashMap<Digest, &Artifact> = live
            .iter()
            .filter(|a| a.kind == Kind::Tool)
            .map(|a| (a.digest, *a))
            .collect();
        for a in &live {
            let team = a.team().to_owned();
            let industries: BTreeSet<String> = a.industries.iter().cloned().collect();
            let domains: BTreeSet<String> = match a.kind {
                Kind::Kit => a
                    .blobs
                    .iter()
                    .filter_map(|b| model_domain.get(b).map(|d| (*d).to_owned()))
                    .collect(),
                Kind::Tool => continue,
                _ if a.domain.is_empty() => BTreeSet::new(),
                _ => [a.domain.clone()].into(),
            };
            for (map, keys) in [(&mut by_industry, &industries), (&mut by_domain, &domains)] {
                for k in keys {
                    let acc = map.entry(k.clone()).or_default();
                    acc.teams.insert(team.clone());
                    match a.kind {
                        Kind::Model => acc.slice.models += 1,
                        Kind::Dataset => acc.slice.datasets += 1,
                        Kind::Kit => acc.slice.kits += 1,
                        Kind::Tool => {}
                    }
                }
            }
            if a.kind == Kind::Kit {
                for b in &a.blobs {
                    if tools.contains_key(b) {
                        let u = tool_use.entry(*b).or_default();
                        u.0.extend(domains.iter().cloned());
                        u.1.extend(industries.iter().cloned());
                    }
                }
                kits.insert(a.digest, (domains, industries));
            }
        }
        for (d, (domains, industries)) in &tool_use {
            let team = tools[d].team().to_owned();
            for (map, keys) in [(&mut by_industry, industries), (&mut by_domain, domains)] {
                for k in keys {
                    let acc = map.entry(k.clone()).or_default();
                    acc.slice.tools += 1;
                    acc.teams.insert(team.clone());
                }
            }
        }
        drop(index);
        let mut enterprise_industries: HashMap<String, Vec<String>> = HashMap::new();
        for (_, v) in self.kv.scan_prefix(Tree::Enterprises, b"")? {
            let e: Enterprise = parse("enterprise", &v)?;
            for i in &e.industries {
                by_industry.entry(i.clone()).or_default().slice.enterprises += 1;
            }
            enterprise_industries.insert(e.name, e.industries);
        }
        let mut served = BTreeSet::new();
        for (_, v) in self.kv.scan_prefix(Tree::Devices, b"")? {
            let d: Device = parse("device", &v)?;
            c.devices += 1;
            if d.revoked {
                continue;
            }
            let theirs = enterprise_industries
                .get(&d.enterprise)
                .cloned()
                .unwrap_or_default();
            for i in &theirs {
                by_industry.entry(i.clone()).or_default().slice.devices += 1;
            }
            let kit = d
                .state
                .active_digest
                .parse::<Digest>()
                .ok()
                .and_then(|k| kits.get(&k));
            let Some((domains, kit_industries)) = kit else {
                continue;
            };
            for dom in domains {
                by_domain.entry(dom.clone()).or_default().slice.devices += 1;
            }
            let made_for: Vec<&String> = theirs
                .iter()
                .filter(|i| kit_industries.contains(*i))
                .collect();
            if d.state.requests == 0 || made_for.is_empty() {
                continue;
            }
            // Its OpenTelemetry figures for that kit reached the registry too.
            let series = format!("{}/{}/{}", d.enterprise, d.id, d.state.active_digest);
            if self.kv.get(Tree::Telemetry, series.as_bytes())?.is_none() {
                continue;
            }
            served.insert(d.enterprise.clone());
            for i in made_for {
                by_industry
                    .entry(i.clone())
                    .or_default()
                    .served
                    .insert(d.enterprise.clone());
            }
            for dom in domains {
                by_domain
                    .entry(dom.clone())
                    .or_default()
                    .served
                    .insert(d.enterprise.clone());
            }
        }
        c.enterprises_served = served.len() as u64;
        c.industries_served = by_industry
            .values()
            .filter(|a| !a.served.is_empty())
            .count() as u64;
        let finish = |m: BTreeMap<String, Acc>| {
            m.into_iter()
                .map(|(k, a)| {
                    let mut s = a.slice;
                    s.teams = a.teams.len() as u64;
                    s.enterprises_served = a.served.len() as u64;
                    (k, s)
                })
                .collect()
        };
        c.by_industry = finish(by_industry);
        c.by_domain = finish(by_domain);
        Ok(())
    }
}
