//! Requests on the active kit: admission, the blocking run, per-step
//! timings and traces, hard examples kept and sent.

use super::*;

impl Agent {
    /// Runs `job` on the active kit: waits for a turn (or answers overloaded
    /// when too many wait), runs off the async threads, records the figures.
    /// `model` must name the active kit (its name without the team, or the full
    /// name; empty: whatever is active); `version`, if given, its version.
    pub async fn run_on_active<T: Send + 'static>(
        self: &Arc<Self>,
        model: &str,
        version: &str,
        traceparent: Option<&str>,
        request_id: &str,
        job: impl FnOnce(&Active, &RequestTrace) -> Result<T, OipError> + Send + 'static,
    ) -> Result<(Arc<Active>, T), OipError> {
        let turn = self.admit(model, version).await?;
        self.run_admitted(turn, traceparent, request_id, job).await
    }

    /// Reads a request's body with `read` (at most `cap` bytes) among a
    /// bounded number of bodies read at once, before the request takes a
    /// turn: a slow sender holds a reading place, never a turn on the kit.
    pub async fn read_body_bounded<B, T, E, F>(
        &self,
        body: B,
        cap: usize,
        read: impl FnOnce(B, usize) -> F,
    ) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        let _place = self.reading.acquire().await.ok();
        read(body, cap).await
    }

    /// Waits for a turn to run a request on the active kit (the bounded queue,
    /// then one of the running slots). Reading and parsing a request's body
    /// happen after this, so that memory is bounded by the running slots.
    pub async fn admit(&self, model: &str, version: &str) -> Result<Turn<'_>, OipError> {
        let active = self.model(model, version)?;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.cfg.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.stats.record_rejected();
            if let Some(t) = &self.telemetry {
                t.request(
                    &active.slot.reference,
                    &active.slot.digest,
                    "overloaded",
                    None,
                );
            }
            return Err(OipError::Overloaded(format!(
                "overloaded: {} requests are already waiting; retry later",
                self.cfg.max_queue
            )));
        }
        let permit = self.running.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| OipError::Unavailable("the agent is stopping".into()))?;
        Ok(Turn {
            active,
            _permit: permit,
        })
    }

    /// Runs a job on a blocking thread in a turn [`Self::admit`] gave.
    pub async fn run_admitted<T: Send + 'static>(
        self: &Arc<Self>,
        turn: Turn<'_>,
        traceparent: Option<&str>,
        request_id: &str,
        job: impl FnOnce(&Active, &RequestTrace) -> Result<T, OipError> + Send + 'static,
    ) -> Result<(Arc<Active>, T), OipError> {
        let active = turn.active.clone();
        let started = Instant::now();
        let mut trace = match &self.telemetry {
            Some(t) => {
                let m = active.kit.manifest();
                t.start_request(
                    traceparent,
                    &format!("infer {}", m.name),
                    &active.slot.reference,
                    &active.slot.digest,
                    &m.version,
                )
            }
            None => RequestTrace::from_traceparent(traceparent),
        };
        trace.request_id = request_id.to_owned();
        let kit = active.clone();
        let job_trace = trace.clone();
        let result = tokio::task::spawn_blocking(move || job(&kit, &job_trace))
            .await
            .unwrap_or_else(|e| Err(OipError::Failed(format!("request task: {e}"))));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.stats.record(ms, result.is_ok());
        if let Some(t) = &self.telemetry {
            t.end_request(
                &trace,
                result.as_ref().err().map(|e| e.to_string()).as_deref(),
            );
            let outcome = match &result {
                Ok(_) => "ok",
                Err(OipError::BadRequest(_)) => "bad_request",
                Err(_) => "failed",
            };
            t.request(
                &active.slot.reference,
                &active.slot.digest,
                outcome,
                Some(ms),
            );
        }
        result.map(|out| (active, out))
    }

    /// Runs the kit, timing each step for the stage metrics.
    pub fn run_kit(
        &self,
        active: &Active,
        trace: &RequestTrace,
        values: algobay_runtime::Values,
    ) -> Result<algobay_runtime::Values, OipError> {
        let sampling = active
            .kit
            .manifest()
            .sampling
            .clone()
            .filter(|_| !self.sampling_off.load(Ordering::Relaxed));
        let remember = self.recent.enabled() && !trace.request_id.is_empty();
        let kept = (sampling.is_some() || remember).then(|| values.clone());
        let started = std::time::SystemTime::now();
        let (out, timings) = active
            .kit
            .run_timed(values)
            .map_err(|e| OipError::Failed(e.to_string()))?;
        if let Some(inputs) = kept {
            let reason = sampling.and_then(|rule| rule.matches(&out));
            // A canary answers with the kit it replaces too, on the same inputs.
            let shadow = active
                .shadow()
                .and_then(|s| match s.kit.run(inputs.clone()) {
                    Ok(o) => Some(crate::samples::ShadowAnswer {
                        digest: s.digest.clone(),
                        outputs: serde_json::Value::Object(
                            o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
                        ),
                    }),
                    Err(e) => {
                        tracing::debug!(error = %e, "the shadow kit failed on a request");
                        None
                    }
                });
            let (mut meta, data) = sample_of(
                active,
                trace,
                &inputs,
                &out,
                reason.clone().unwrap_or_default(),
            );
            meta.shadow = shadow;
            if reason.is_some() {
                if let Err(e) = self.samples.push(&meta, &data) {
                    tracing::warn!(error = %e, "could not keep a hard example");
                }
            }
            if remember {
                if let Err(e) = self.recent.record(&trace.request_id, &meta, &data) {
                    tracing::warn!(error = %e, "could not keep the request for feedback");
                }
            }
        }
        if let Some(t) = &self.telemetry {
            t.steps(trace, started, &timings);
            for s in &timings {
                t.stage(
                    &active.slot.reference,
                    &active.slot.digest,
                    &s.step,
                    s.elapsed.as_secs_f64() * 1000.0,
                );
            }
        }
        Ok(out)
    }

    /// Runs the active kit on the protocol's tensors; returns the outputs asked
    /// for (all when `wanted` is empty).
    pub async fn infer(
        self: &Arc<Self>,
        model: &str,
        version: &str,
        inputs: Vec<RawTensor>,
        wanted: Vec<String>,
        traceparent: Option<&str>,
        request_id: &str,
    ) -> Result<(Arc<Active>, Vec<RawTensor>), OipError> {
        let turn = self.admit(model, version).await?;
        self.infer_in(turn, inputs, wanted, traceparent, request_id)
            .await
    }

    /// [`Self::infer`] in a turn already given.
    pub async fn infer_in(
        self: &Arc<Self>,
        turn: Turn<'_>,
        inputs: Vec<RawTensor>,
        wanted: Vec<String>,
        traceparent: Option<&str>,
        request_id: &str,
    ) -> Result<(Arc<Active>, Vec<RawTensor>), OipError> {
        crate::oip::check_request(&inputs, &wanted)?;
        let agent = self.clone();
        self.run_admitted(turn, traceparent, request_id, move |active, trace| {
            let manifest = active.kit.manifest();
            let mut values = algobay_runtime::Values::new();
            for t in &inputs {
                let port = manifest
                    .inputs
                    .iter()
                    .find(|p| p.name == t.name)
                    .ok_or_else(|| {
                        OipError::BadRequest(format!(
                            "input `{}` is not one of the kit's inputs ({})",
                            crate::oip::shown(&t.name),
                            manifest
                                .inputs
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                values.insert(t.name.clone(), crate::oip::to_value(&port.ty, t)?);
            }
            if let Some(missing) = manifest
                .inputs
                .iter()
                .find(|p| !values.contains_key(&p.name))
            {
                return Err(OipError::BadRequest(format!(
                    "input `{}` is missing",
                    missing.name
                )));
            }
            for w in &wanted {
                if !manifest.outputs.iter().any(|p| &p.name == w) {
                    return Err(OipError::BadRequest(format!(
                        "output `{}` is not one of the kit's outputs",
                        crate::oip::shown(w)
                    )));
                }
            }
            let out = agent.run_kit(active, trace, values)?;
            Ok(out
                .iter()
                .filter(|(k, _)| wanted.is_empty() || wanted.contains(k))
                .map(|(k, v)| crate::oip::from_value(k, v))
                .collect::<Vec<_>>())
        })
        .await
    }

    /// Takes the application's ground truth for a recent request, once: its
    /// sample (inputs as served, the kit's outputs) is queued with a
    /// `feedback` label, to go to the registry like hard examples. The label
    /// is checked as the kit's label: one of its classes when the kit names
    /// them, never with control characters. Returns the sample id.
    pub fn feedback(&self, request_id: &str, label: &str) -> Result<String, OipError> {
        let label = label.trim();
        if label.is_empty() || label.len() > 256 {
            return Err(OipError::BadRequest(
                "label: must be 1 to 256 bytes of text".into(),
            ));
        }
        if label.chars().any(char::is_control) {
            return Err(OipError::BadRequest(format!(
                "label `{}`: control characters are not a label",
                label.escape_default()
            )));
        }
        if !self.recent.enabled() {
            return Err(OipError::BadRequest(
                "this device keeps no recent requests (recent_requests = 0); feedback cannot be matched".into(),
            ));
        }
        if let Some(active) = self.active() {
            let classes = active
                .kit
                .manifest()
                .training
                .as_ref()
                .map(|t| t.classes.clone())
                .unwrap_or_default();
            if !classes.is_empty() && !classes.iter().any(|c| c == label) {
                return Err(OipError::BadRequest(format!(
                    "label `{}` is not one of the kit's classes ({})",
                    crate::oip::shown(label),
                    classes.join(", ")
                )));
            }
        }
        let taken = self
            .recent
            .take_feedback(request_id, label)
            .map_err(|e| OipError::Failed(e.to_string()))?;
        let (mut meta, data) = match taken {
            crate::recent::Taken::Sample(m, d) => (m, d),
            crate::recent::Taken::Already(prev) => {
                return Err(OipError::Conflict(format!(
                    "request `{}` has its feedback already (`{}`); a correction is a new label, given where labels are kept (`algobay samples label`)",
                    crate::oip::shown(request_id),
                    prev.escape_default()
                )))
            }
            crate::recent::Taken::Gone => {
                return Err(OipError::NotFound(format!(
                    "request `{}` is not among the {} most recent requests",
                    crate::oip::shown(request_id),
                    self.cfg.recent_requests
                )))
            }
        };
        if meta.reason.is_empty() {
            meta.reason = "feedback".into();
        }
        meta.feedback = Some(label.to_owned());
        self.samples
            .push(&meta, &data)
            .map_err(|e| OipError::Failed(e.to_string()))?;
        Ok(meta.id)
    }

    /// Sends queued hard examples, oldest first, in batches within what the
    /// registry takes in one push (as it said at the last sync), until the
    /// queue is empty or the link fails (they stay queued then). A batch the
    /// registry refuses is split; a single sample it refuses for good (its kit
    /// no longer deployed, too large) is dropped and counted, so the queue
    /// never wedges behind it.
    pub(super) async fn upload_samples(self: &Arc<Self>, client: &Client) {
        let (count_cap, bytes_cap) = self.push_limits();
        let mut count = count_cap;
        for _ in 0..256 {
            let a = self.clone();
            let batch =
                match tokio::task::spawn_blocking(move || a.samples.peek(bytes_cap, count)).await {
                    Ok(Ok(b)) if !b.is_empty() => b,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "sample queue unreadable");
                        return;
                    }
                    _ => return,
                };
            let seqs: Vec<u64> = batch.iter().map(|(s, _, _)| *s).collect();
            let samples: Vec<algobay_sdk::fleet::Sample> = batch
                .into_iter()
                .map(|(_, m, d)| wire_sample(m, d))
                .collect();
            let n = samples.len();
            let acked = match client.push_samples(&samples).await {
                Ok((stored, dup)) => {
                    tracing::info!(stored, duplicates = dup, "hard examples sent");
                    // A batch that went through lets the next be full again.
                    count = count_cap;
                    seqs
                }
                Err(e) if refused_for_good(&e) && n > 1 => {
                    count = (n / 2).max(1);
                    tracing::warn!(error = %e, samples = n, "the registry refused a batch of samples; sending it in halves");
                    continue;
                }
                Err(e) if refused_for_good(&e) => {
                    tracing::warn!(error = %e, sample = %samples[0].id, "the registry refuses this sample; dropped");
                    self.samples.count_dropped(1);
                    seqs
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hard examples stay queued");
                    return;
                }
            };
            let a = self.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.samples.ack(&acked)).await {
                tracing::warn!(error = %e, "sample queue");
                return;
            }
        }
    }

    /// (samples, bytes) one push may carry: what the registry said, or 256
    /// and 4 MiB before it said anything.
    fn push_limits(&self) -> (usize, u64) {
        let count = self.push_count.load(Ordering::Relaxed);
        let bytes = self.push_bytes.load(Ordering::Relaxed);
        (
            if count == 0 { 256 } else { count as usize },
            if bytes == 0 { 4 << 20 } else { bytes },
        )
    }

    /// The active kit, if `model` (and `version`) name it.
    pub fn model(&self, model: &str, version: &str) -> Result<Arc<Active>, OipError> {
        let active = self
            .active()
            .ok_or_else(|| OipError::Unavailable("no kit is active on this device".into()))?;
        let m = active.kit.manifest();
        let short = m.name.rsplit('/').next().unwrap_or(&m.name);
        if !model.is_empty() && model != short && model != m.name {
            return Err(OipError::NotFound(format!(
                "model `{}` is not served here; the active kit is `{short}`",
                crate::oip::shown(model)
            )));
        }
        if !version.is_empty() && version != m.version {
            return Err(OipError::NotFound(format!(
                "model `{short}` version `{}` is not served here; version {} is",
                crate::oip::shown(version),
                m.version
            )));
        }
        Ok(active)
    }
}

/// A request as a sample: its inputs' bytes, the outputs, why it was kept.
fn sample_of(
    active: &Active,
    trace: &RequestTrace,
    inputs: &algobay_runtime::Values,
    outputs: &algobay_runtime::Values,
    reason: String,
) -> (crate::samples::SampleMeta, Vec<u8>) {
    use algobay_runtime::Value;
    let mut metas = Vec::new();
    let mut data = Vec::new();
    let mut id = active.slot.digest.clone();
    for (name, v) in inputs {
        let (datatype, shape, bytes): (String, Vec<i64>, &[u8]) = match v {
            Value::Tensor(t) => (
                crate::oip::datatype(t.dtype).into(),
                t.shape.iter().map(|d| *d as i64).collect(),
                &t.data,
            ),
            Value::Bytes(b) => ("BYTES".into(), vec![1], b),
            Value::Text(s) | Value::Json(s) => ("BYTES".into(), vec![1], s.as_bytes()),
        };
        let d = Digest::of(bytes);
        id.push_str(&d.to_string());
        metas.push(crate::samples::SampleInput {
            name: name.clone(),
            datatype,
            shape,
            digest: d.to_string(),
            size: bytes.len() as u64,
        });
        data.extend_from_slice(bytes);
    }
    let meta = crate::samples::SampleMeta {
        id: Digest::of(id.as_bytes()).hex(),
        kit_reference: active.slot.reference.clone(),
        kit_digest: active.slot.digest.clone(),
        deployment_id: active.slot.deployment_id.clone(),
        reason,
        trace_id: trace.trace_id.clone(),
        created_unix: now_unix(),
        outputs: serde_json::Value::Object(
            outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        ),
        inputs: metas,
        feedback: None,
        shadow: None,
    };
    (meta, data)
}

/// Whether the registry's refusal of a push is about what was sent (so
/// sending it again as it is would be refused again).
fn refused_for_good(e: &algobay_sdk::SdkError) -> bool {
    use algobay_sdk::client::Code;
    matches!(
        e,
        algobay_sdk::SdkError::Status { code, .. } if matches!(
            code,
            Code::ResourceExhausted
                | Code::InvalidArgument
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::OutOfRange
        )
    )
}

/// A queued sample as the registry takes it.
fn wire_sample(meta: crate::samples::SampleMeta, data: Vec<u8>) -> algobay_sdk::fleet::Sample {
    let mut at = 0usize;
    let inputs = meta
        .inputs
        .iter()
        .map(|i| {
            let end = (at + i.size as usize).min(data.len());
            let bytes = data[at.min(end)..end].to_vec();
            at = end;
            algobay_sdk::fleet::SampleInput {
                name: i.name.clone(),
                datatype: i.datatype.clone(),
                shape: i.shape.clone(),
                digest: i.digest.clone(),
                size: i.size,
                data: bytes,
            }
        })
        .collect();
    algobay_sdk::fleet::Sample {
        id: meta.id,
        kit_digest: meta.kit_digest,
        kit_reference: meta.kit_reference,
        deployment_id: meta.deployment_id,
        reason: meta.reason,
        trace_id: meta.trace_id,
        created_unix: meta.created_unix,
        outputs_json: meta.outputs.to_string(),
        shadow_outputs_json: meta
            .shadow
            .as_ref()
            .map(|s| s.outputs.to_string())
            .unwrap_or_default(),
        shadow_digest: meta
            .shadow
            .as_ref()
            .map(|s| s.digest.clone())
            .unwrap_or_default(),
        inputs,
        device_id: String::new(),
        enterprise: String::new(),
        labels: meta
            .feedback
            .map(|value| algobay_sdk::fleet::SampleLabel {
                value,
                source: "feedback".into(),
                by: String::new(),
                at_unix: 0,
            })
            .into_iter()
            .collect(),
    }
}
