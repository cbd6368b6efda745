//! Hard examples from devices: each sample's record, its inputs stored in the
//! enterprise's own namespace in the same atomic batch, listed per tenant.

use std::collections::BTreeSet;

use algobay_runtime::Digest;

use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::service::{json, parse, Registry};
use crate::store::{Batch, Tree};

/// Samples in one push.
pub const MAX_SAMPLES: usize = 256;

/// A label's value: within the item length, not blank, without control
/// characters. `context` starts the message (the sample it is for, if any).
fn check_label(field: &str, value: &str, context: &str) -> Result<()> {
    crate::limits::check_len(field, value, crate::limits::text::ITEM)?;
    if value.trim().is_empty() {
        return Err(RegistryError::invalid(field, format!("{context}is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(RegistryError::invalid(
            field,
            format!(
                "{context}`{}` holds control characters",
                value.escape_default()
            ),
        ));
    }
    Ok(())
}

/// The bytes of samples one push should carry (under the gRPC message limit,
/// with room for the records around them); sent to devices with every sync.
pub const MAX_PUSH_BYTES: u64 = 8 << 20;
/// Samples in one page of a listing.
const MAX_PAGE: usize = 500;
/// Labels in one call.
const MAX_LABELS: usize = 1000;

impl Registry {
    /// Stores hard examples from a device: its input bytes as blobs (each
    /// checked against its digest), the record once per sample id. Returns
    /// (stored, already there).
    pub fn push_samples(
        &self,
        p: &Principal,
        samples: Vec<(SampleRecord, Vec<Vec<u8>>)>,
    ) -> Result<(u32, u32)> {
        let dev = self.device_for(p)?;
        if samples.len() > MAX_SAMPLES {
            return Err(RegistryError::TooLarge(format!(
                "{} samples in one push, over the limit of {MAX_SAMPLES}",
                samples.len()
            )));
        }
        // The kits deployed to the enterprise, by digest: a sample's kit
        // reference is the registry's, not what the device says.
        let deployed: std::collections::BTreeMap<Digest, String> = self
            .deployments_of(&dev.enterprise)?
            .into_iter()
            .map(|d| (d.kit_digest, d.kit_reference))
            .collect();
        let now = self.clock.now_unix();
        let (mut stored, mut dup) = (0, 0);
        for (mut rec, data) in samples {
            if rec.id.len() != 64 || !rec.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RegistryError::invalid(
                    "sample.id",
                    format!("`{}` is not 64 hex digits", crate::limits::shown(&rec.id)),
                ));
            }
            let Some(reference) = deployed.get(&rec.kit_digest) else {
                return Err(RegistryError::PermissionDenied(format!(
                    "sample {}: kit {} is not deployed to enterprise `{}`",
                    rec.id, rec.kit_digest, dev.enterprise
                )));
            };
            rec.kit_reference = reference.clone();
            if rec.inputs.len() > 64
                || rec.outputs_json.len() > 1 << 20
                || rec.shadow_outputs_json.len() > 1 << 20
            {
                return Err(RegistryError::TooLarge(format!(
                    "sample {}: {} inputs, {} bytes of outputs and {} of shadow outputs, over the limits of 64, 1 MiB and 1 MiB",
                    rec.id,
                    rec.inputs.len(),
                    rec.outputs_json.len(),
                    rec.shadow_outputs_json.len()
                )));
            }
            // A shadow is the kit another deployment of the enterprise serves.
            if let Some(d) = rec.shadow_digest {
                if !deployed.contains_key(&d) {
                    return Err(RegistryError::invalid(
                        "sample.shadow_kit_digest",
                        format!(
                            "sample {}: kit {d} is not deployed to enterprise `{}`",
                            rec.id, dev.enterprise
                        ),
                    ));
                }
            } else if !rec.shadow_outputs_json.is_empty() {
                return Err(RegistryError::invalid(
                    "sample.shadow_kit_digest",
                    format!("sample {}: shadow outputs without the shadow's kit", rec.id),
                ));
            }
            if data.len() != rec.inputs.len() {
                return Err(RegistryError::invalid(
                    "sample.inputs",
                    format!("sample {}: inputs and their data do not pair up", rec.id),
                ));
            }
            // Inputs go to the enterprise's own namespace, with the record, in one batch.
            let mut batch = Batch::new();
            for (input, bytes) in rec.inputs.iter().zip(data) {
                let key = crate::access::sample_key(&dev.enterprise, &input.digest);
                if bytes.is_empty() && input.size != 0 {
                    if self.kv.get(Tree::SampleInputs, key.as_bytes())?.is_none() {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "input `{}` of sample {} came without its bytes and is not stored",
                            crate::limits::shown(&input.name),
                            rec.id
                        )));
                    }
                    continue;
                }
                if bytes.len() > crate::access::MAX_SAMPLE_INPUT {
                    return Err(RegistryError::TooLarge(format!(
                        "sample.inputs.data: input `{}` of sample {} is {} bytes, over the limit of {}",
                        crate::limits::shown(&input.name),
                        rec.id,
                        bytes.len(),
                        crate::access::MAX_SAMPLE_INPUT
                    )));
                }
                if bytes.len() as u64 != input.size || Digest::of(&bytes) != input.digest {
                    return Err(RegistryError::invalid(
                        "sample.inputs.data",
                        format!(
                            "input `{}` of sample {}: the bytes are not the {} bytes of {}",
                            crate::limits::shown(&input.name),
                            rec.id,
                            input.size,
                            input.digest
                        ),
                    ));
                }
                batch = batch.put(Tree::SampleInputs, key, bytes);
            }
            rec.enterprise = dev.enterprise.clone();
            rec.device_id = dev.id.clone();
            rec.received_unix = now;
            let key = format!("{}/{}/{}", rec.enterprise, rec.kit_digest, rec.id);
            // A device gives only its application's ground truth (feedback).
            let mut labels = Batch::new();
            for (i, l) in std::mem::take(&mut rec.labels).into_iter().enumerate() {
                if l.source != LabelSource::Feedback {
                    return Err(RegistryError::PermissionDenied(format!(
                        "sample {}: labels[{i}] is from `{}`; a device sends only feedback labels",
                        rec.id,
                        l.source.as_str()
                    )));
                }
                let value = l.value.trim();
                check_label(
                    &format!("sample.labels[{i}].value"),
                    value,
                    &format!("sample {}: ", rec.id),
                )?;
                let label = Label {
                    value: value.to_owned(),
                    source: LabelSource::Feedback,
                    by: dev.id.clone(),
                    at_unix: now,
                };
                // The application's answer for a sample is given once: a
                // later one (another request with the same input, a resend)
                // does not replace it; a correction is a labeller's label.
                let lk = format!("{key}/{}", LabelSource::Feedback.as_str());
                labels = labels.check(Tree::Labels, lk.as_bytes(), None).put(
                    Tree::Labels,
                    lk,
                    json(&label),
                );
            }
            let labelled = !labels.is_empty();
            if self.kv.commit(
                batch
                    .check(Tree::Samples, key.as_bytes(), None)
                    .put(Tree::Samples, key.as_bytes(), json(&rec))
                    .extend(labels.clone()),
            )? {
                stored += 1;
            } else {
                // The sample was there already (a hard example the same
                // request made, or a resend): its label still counts, unless
                // it has the application's answer already.
                if labelled {
                    self.kv.commit(labels)?;
                }
                dup += 1;
            }
        }
        Ok((stored, dup))
    }

    /// Hard examples of an enterprise (an operator may name any), optionally of
    /// one kit (reference or digest), oldest first, a page at a time.
    pub fn list_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        page_size: usize,
        page_token: &str,
        unlabelled: bool,
    ) -> Result<(Vec<SampleRecord>, String)> {
        let e = self.tenant(p, enterprise)?;
        let prefix = if kit.is_empty() {
            format!("{e}/")
        } else {
            let d = if kit.starts_with("sha256:") {
                kit.parse::<Digest>()
                    .map_err(|err| RegistryError::invalid("kit", err.to_string()))?
            } else {
                self.get(kit, Some(Kind::Kit))?.digest
            };
            format!("{e}/{d}/")
        };
        let size = page_size.clamp(1, MAX_PAGE);
        let mut out = Vec::new();
        let mut next = String::new();
        for (k, v) in self.kv.scan_prefix(Tree::Samples, prefix.as_bytes())? {
            let key = String::from_utf8_lossy(&k).into_owned();
            if !page_token.is_empty() && key.as_str() <= page_token {
                continue;
            }
            let mut rec: SampleRecord = parse("sample", &v)?;
            rec.labels = self.labels_of(&key)?;
            if unlabelled && !rec.labels.is_empty() {
                continue;
            }
            if out.len() == size {
                next = out
                    .last()
                    .map(|r: &SampleRecord| format!("{}/{}/{}", r.enterprise, r.kit_digest, r.id))
                    .unwrap_or_default();
                break;
            }
            out.push(rec);
        }
        Ok((out, next))
    }

    /// The labels of the sample stored under `key`, one per source.
    fn labels_of(&self, key: &str) -> Result<Vec<Label>> {
        self.kv
            .scan_prefix(Tree::Labels, format!("{key}/").as_bytes())?
            .into_iter()
            .map(|(_, v)| parse("label", &v))
            .collect()
    }

    /// Labels samples of an enterprise (its own; an operator names it) from one
    /// source, replacing that source's earlier label. Returns how many were
    /// labelled and the ids it has no sample for.
    pub fn label_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        source: LabelSource,
        labels: Vec<(String, String)>,
    ) -> Result<(u32, Vec<String>)> {
        let e = self.tenant(p, enterprise)?;
        if labels.len() > MAX_LABELS {
            return Err(RegistryError::TooLarge(format!(
                "{} labels in one call, over the limit of {MAX_LABELS}",
                labels.len()
            )));
        }
        for (i, (id, value)) in labels.iter().enumerate() {
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RegistryError::invalid(
                    format!("labels[{i}].sample_id"),
                    format!("`{}` is not 64 hex digits", crate::limits::shown(id)),
                ));
            }
            check_label(&format!("labels[{i}].value"), value, "")?;
        }
        // Where each wanted sample is stored (its key names its kit).
        let wanted: BTreeSet<&str> = labels.iter().map(|(id, _)| id.as_str()).collect();
        let mut keys = std::collections::BTreeMap::new();
        for (k, _) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{e}/").as_bytes())?
        {
            let key = String::from_utf8_lossy(&k).into_owned();
            if let Some(id) = key.rsplit('/').next().filter(|id| wanted.contains(id)) {
                keys.insert(id.to_owned(), key.clone());
            }
        }
        let now = self.clock.now_unix();
        let mut batch = Batch::new();
        let (mut labelled, mut unknown) = (0u32, Vec::new());
        for (id, value) in labels {
            let Some(key) = keys.get(&id) else {
                unknown.push(id);
                continue;
            };
            let label = Label {
                value: value.trim().to_owned(),
                source,
                by: p.token_id.clone(),
                at_unix: now,
            };
            batch = batch.put(
                Tree::Labels,
                format!("{key}/{}", source.as_str()),
                json(&label),
            );
            labelled += 1;
        }
        if labelled > 0 && !self.kv.commit(batch)? {
            return Err(RegistryError::Storage("labels were not written".into()));
        }
        Ok((labelled, unknown))
    }
}
