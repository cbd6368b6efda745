//! The gRPC adapter: wire types in, domain types to the [`RegistryApi`], wire types out.
//! Every registry call runs on a blocking thread.
#![allow(missing_debug_implementations)] // the services hold only a trait object

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use algobay_proto::v1 as pb;
use algobay_runtime::sign::Signature;
use algobay_runtime::Digest;

use crate::blobs::VerifyingReader;
use crate::domain::*;
use crate::error::RegistryError;
use crate::service::{DatasetSpec, ModelSpec, RegistryApi, ToolSpec};
use chunks::{check_chunk, next_chunk, prove_possession, upload_beside};

/// Size of the chunks downloads are sent in.
pub const CHUNK: usize = 1 << 20;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(Status::from)
}

/// Appends the chunks an upload gathered (if any) at `received`; returns
/// what the store then holds.
async fn append_gathered(
    reg: &Arc<dyn RegistryApi>,
    d: Digest,
    received: u64,
    pending: &mut Vec<u8>,
) -> Result<u64, Status> {
    if pending.is_empty() {
        return Ok(received);
    }
    let (reg, data) = (reg.clone(), std::mem::take(pending));
    blocking(move || reg.blobs().append(&d, received, &data)).await
}

fn token<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned())
}

/// The caller: as the guard layer authenticated it before the body was read
/// ([`guard`]), else by its bearer token, or (with no token) by the client
/// certificate an enrolled device presented in the TLS handshake.
async fn principal<T>(reg: &Arc<dyn RegistryApi>, req: &Request<T>) -> Result<Principal, Status> {
    if let Some(guard::Authenticated(p)) = req.extensions().get::<guard::Authenticated>() {
        return Ok(p.clone());
    }
    let reg = reg.clone();
    let t = token(req);
    let cert = req
        .peer_certs()
        .and_then(|c| c.first().map(|c| crate::tls::der_fingerprint(c.as_ref())));
    match (t, cert) {
        (None, Some(fp)) => blocking(move || reg.authenticate_device(&fp)).await,
        (t, _) => blocking(move || reg.authenticate(t.as_deref())).await,
    }
}

fn role_to_pb(r: Role) -> i32 {
    match r {
        Role::Operator => pb::Role::Operator as i32,
        Role::Team => pb::Role::Team as i32,
        Role::Enterprise => pb::Role::Enterprise as i32,
        Role::Device => pb::Role::Device as i32,
        // Never a token's role: nobody signs in as a visitor.
        Role::Visitor => pb::Role::Unspecified as i32,
    }
}

fn kind_from_pb(k: i32) -> Result<Option<Kind>, Status> {
    match pb::Kind::try_from(k) {
        Ok(pb::Kind::Unspecified) => Ok(None),
        Ok(pb::Kind::Model) => Ok(Some(Kind::Model)),
        Ok(pb::Kind::Tool) => Ok(Some(Kind::Tool)),
        Ok(pb::Kind::Kit) => Ok(Some(Kind::Kit)),
        Ok(pb::Kind::Dataset) => Ok(Some(Kind::Dataset)),
        Err(_) => Err(Status::invalid_argument(format!(
            "invalid kind: {k} is not a known kind"
        ))),
    }
}

fn kind_to_pb(k: Kind) -> i32 {
    match k {
        Kind::Model => pb::Kind::Model as i32,
        Kind::Tool => pb::Kind::Tool as i32,
        Kind::Dataset => pb::Kind::Dataset as i32,
        Kind::Kit => pb::Kind::Kit as i32,
    }
}

fn artifact_to_pb(a: Artifact) -> pb::Artifact {
    let port = |p: algobay_runtime::manifest::Port| pb::Port {
        name: p.name,
        r#type: p.ty.to_string(),
    };
    pb::Artifact {
        kind: kind_to_pb(a.kind),
        name: a.name,
        version: a.version,
        digest: a.digest.to_string(),
        size: a.size,
        description: a.description,
        license: a.license,
        industries: a.industries,
        tags: a.tags,
        domain: a.domain,
        task: a.task,
        format: a.format,
        architecture: a.architecture,
        tool_kind: a.tool_kind,
        scenario: a.scenario,
        private_to: a.private_to,
        dataset: a.dataset.map(|d| pb::DatasetCard {
            format: d.format,
            source: d.source,
            rows: d.rows,
            columns: d.columns,
            label_column: d.label_column,
            label_counts: d.label_counts.into_iter().collect(),
            input_type: d.input_type,
            label_range: d.label_range,
        }),
        inputs: a.inputs.into_iter().map(port).collect(),
        outputs: a.outputs.into_iter().map(port).collect(),
        card: a.card,
        metrics: a.metrics.into_iter().collect(),
        parent: a.parent,
        blobs: a.blobs.iter().map(Digest::to_string).collect(),
        yanked: a.yanked,
        published_unix: a.published_unix,
        published_by: a.published_by,
        signatures: a
            .signatures
            .into_iter()
            .map(|s| pb::KitSignature {
                key: s.key,
                signature: s.signature,
            })
            .collect(),
    }
}

fn parse_digest(field: &str, s: &str) -> Result<Digest, Status> {
    s.parse().map_err(|e: algobay_runtime::Error| {
        Status::from(RegistryError::invalid(field, e.to_string()))
    })
}

// ---------------------------------------------------------------- admin

/// The Admin service.
#[derive(Clone)]
pub struct AdminApi(pub Arc<dyn RegistryApi>);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminApi {
    async fn create_team(
        &self,
        req: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let t =
            blocking(move || reg.create_team(&p, &r.name, &r.display_name, &r.signing_key)).await?;
        Ok(Response::new(pb::Team {
            name: t.name,
            display_name: t.display_name,
            signing_key: t.signing_key,
            created_unix: t.created_unix,
        }))
    }

    async fn create_enterprise(
        &self,
        req: Request<pb::CreateEnterpriseRequest>,
    ) -> Result<Response<pb::Enterprise>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let e = blocking(move || reg.create_enterprise(&p, &r.name, &r.display_name, r.industries))
            .await?;
        Ok(Response::new(pb::Enterprise {
            name: e.name,
            display_name: e.display_name,
            industries: e.industries,
            created_unix: e.created_unix,
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let role = match pb::Role::try_from(r.role) {
            Ok(pb::Role::Operator) => Role::Operator,
            Ok(pb::Role::Team) => Role::Team,
            Ok(pb::Role::Enterprise) => Role::Enterprise,
            _ => {
                return Err(
                    RegistryError::invalid("role", "must be operator, team or enterprise").into(),
                )
            }
        };
        let reg = self.0.clone();
        let (rec, token) =
            blocking(move || reg.create_token(&p, role, &r.subject, r.ttl_seconds, &r.description))
                .await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token_id: rec.id,
            token,
            expires_unix: rec.expires_unix,
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let id = req.into_inner().token_id;
        let reg = self.0.clone();
        blocking(move || reg.revoke_token(&p, &id)).await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        Ok(Response::new(pb::WhoAmIResponse {
            role: role_to_pb(p.role),
            subject: p.subject,
            token_id: p.token_id,
        }))
    }
}

// ---------------------------------------------------------------- blobs

/// The Blobs service.
#[derive(Clone)]
pub struct BlobsApi(pub Arc<dyn RegistryApi>);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::blobs_server::Blobs for BlobsApi {
    async fn stat(
        &self,
        req: Request<pb::StatBlobRequest>,
    ) -> Result<Response<pb::StatBlobResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let d = parse_digest("digest", &r.digest)?;
        let reg = self.0.clone();
        let s = blocking(move || reg.stat_blob(&p, &d, &r.enterprise)).await?;
        Ok(Response::new(pb::StatBlobResponse {
            present: s.size.is_some(),
            size: s.size.unwrap_or(0),
            received: s.received,
        }))
    }

    async fn upload(
        &self,
        req: Request<Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        self.0.may_upload(&p)?;
        let idle = self.0.ceilings().upload_idle;
        let mut stream = req.into_inner();
        let first = next_chunk(&mut stream, idle, 0).await?.ok_or_else(|| {
            Status::from(RegistryError::invalid(
                "upload",
                "the stream carried no chunk",
            ))
        })?;
        let d = parse_digest("digest", &first.digest)?;
        let size = first.size;
        let first_offset = first.offset;
        // A blob that fits one chunk is stored in one step (no resumable record).
        let mut chunk = Some(first);
        let mut rest = None;
        if let Some(c) = chunk
            .as_ref()
            .filter(|c| c.offset == 0 && c.data.len() as u64 == size)
        {
            if !c.chunk_digest.is_empty() {
                check_chunk(&d, 0, c)?;
            }
            match next_chunk(&mut stream, idle, size).await? {
                None => {
                    let data = chunk.take().map(|c| c.data).unwrap_or_default();
                    let reg = self.0.clone();
                    let existed = blocking(move || {
                        let existed = reg.blobs().stat(&d)?.size.is_some();
                        if existed {
                            // The sender proves it holds the bytes before it learns they are here.
                            if Digest::of(&data) != d {
                                return Err(RegistryError::invalid(
                                    "data",
                                    format!("the bytes hash to {}, not {d}", Digest::of(&data)),
                                ));
                            }
                        } else {
                            reg.blobs().put(&d, &data)?;
                        }
                        reg.note_upload(&p, &d, true)?;
                        Ok(existed)
                    })
                    .await?;
                    return Ok(Response::new(pb::UploadResponse {
                        digest: d.to_string(),
                        size,
                        existed,
                    }));
                }
                Some(next) => rest = Some(next),
            }
        }
        let reg = self.0.clone();
        let caller = p.clone();
        let (stat, sees) =
            blocking(move || Ok((reg.blobs().stat(&d)?, reg.sees_in_catalog(&caller, &d)?)))
                .await?;
        if let Some(s) = stat.size {
            if !sees {
                // Stored, but not yet known to this caller: it learns so only
                // after sending the bytes, which are hashed and dropped.
                if first_offset != 0 {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "upload of {d} must start at byte 0, not {first_offset}"
                    ))
                    .into());
                }
                let first = [chunk.take(), rest.take()];
                prove_possession(&d, s, first, &mut stream, idle).await?;
            }
            let reg = self.0.clone();
            blocking(move || reg.note_upload(&p, &d, true)).await?;
            return Ok(Response::new(pb::UploadResponse {
                digest: d.to_string(),
                size: s,
                existed: true,
            }));
        }
        let reg = self.0.clone();
        let caller = p.clone();
        let (from, opener) = blocking(move || {
            let from = reg.blobs().begin(&d, size)?;
            // The session is its opener's: whoever started it, or starts it now.
            let opener = from == 0 || reg.opened_upload(&caller, &d)?;
            if opener {
                reg.note_upload(&caller, &d, false)?;
            }
            Ok((from, opener))
        })
        .await?;
        if !opener {
            // Another principal's unfinished upload: this caller learns
            // nothing of it (not how far it got) and sends every byte, which
            // are hashed; only what the partial lacks is added to it, and the
            // blob is the caller's only if all of its bytes hash to `d`.
            if first_offset != 0 {
                return Err(RegistryError::FailedPrecondition(format!(
                    "upload of {d} must start at byte 0, not {first_offset}"
                ))
                .into());
            }
            let first = [chunk.take(), rest.take()];
            let size = upload_beside(&self.0, d, size, from, first, &mut stream, idle).await?;
            let reg = self.0.clone();
            blocking(move || reg.note_upload(&p, &d, true)).await?;
            return Ok(Response::new(pb::UploadResponse {
                digest: d.to_string(),
                size,
                existed: false,
            }));
        }
        if first_offset != from {
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} must resume at byte {from}, not {}",
                first_offset
            ))
            .into());
        }
        // Chunks are gathered up to the store's preferred append (an object
        // store's part size, so that they are written once, not staged); what
        // is gathered is appended before any error, so the point to resume
        // from is always what the store holds.
        let gather = self.0.blobs().preferred_append().max(1);
        let mut received = from;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let at = received + pending.len() as u64;
            let next = match chunk.take().or_else(|| rest.take()) {
                Some(c) => Ok(Some(c)),
                None => next_chunk(&mut stream, idle, at).await,
            };
            let c = match next.and_then(|c| match c {
                Some(c) if !c.chunk_digest.is_empty() => check_chunk(&d, at, &c).map(|_| Some(c)),
                other => Ok(other),
            }) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    append_gathered(&self.0, d, received, &mut pending).await?;
                    return Err(e);
                }
            };
            if c.data.is_empty() {
                continue;
            }
            let len = c.data.len() as u64;
            if pending.is_empty() && c.data.len() >= gather {
                pending = c.data;
            } else {
                pending.extend_from_slice(&c.data);
            }
            if pending.len() >= gather || at + len >= size {
                received = append_gathered(&self.0, d, received, &mut pending).await?;
            }
        }
        received = append_gathered(&self.0, d, received, &mut pending).await?;
        if received != size {
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} stopped at {received} of {size} bytes; resume from byte {received}"
            ))
            .into());
        }
        let reg = self.0.clone();
        let size = blocking(move || {
            let size = reg.blobs().finish(&d)?;
            reg.note_upload(&p, &d, true)?;
            Ok(size)
        })
        .await?;
        Ok(Response::new(pb::UploadResponse {
            digest: d.to_string(),
            size,
            existed: false,
        }))
    }

    type DownloadStream = ChunkStream;

    async fn download(
        &self,
        req: Request<pb::DownloadRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let d = parse_digest("digest", &r.digest)?;
        let reg = self.0.clone();
        let enterprise = r.enterprise.clone();
        let (size, reader) = blocking(move || reg.open_blob(&p, &d, &enterprise)).await?;
        if r.offset > size {
            return Err(RegistryError::invalid(
                "offset",
                format!("{} is past the end of {d} ({size} bytes)", r.offset),
            )
            .into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::DownloadChunk, Status>>(4);
        let offset = r.offset;
        let reg = self.0.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            // Every byte is hashed, those before the offset too, so a corrupt blob fails the download.
            let mut v = VerifyingReader::new(d, size, reader);
            let mut pos = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match v.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::data_loss(e.to_string())));
                        return;
                    }
                };
                if n == 0 {
                    // A whole download from the start counts once (a resumed one does not).
                    if offset == 0 {
                        if let Err(e) = reg.note_download(&d) {
                            tracing::warn!(digest = %d, error = %e, "download not counted");
                        }
                    }
                    return;
                }
                let end = pos + n as u64;
                if end > offset {
                    let skip = offset.saturating_sub(pos) as usize;
                    let chunk = pb::DownloadChunk {
                        offset: pos + skip as u64,
                        data: buf[skip..n].to_vec(),
                        size,
                    };
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                pos = end;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

// ---------------------------------------------------------------- catalog

/// The Catalog service.
#[derive(Clone)]
pub struct CatalogApi(pub Arc<dyn RegistryApi>);

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogApi {
    async fn publish_model(
        &self,
        req: Request<pb::PublishModelRequest>,
    ) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let spec = ModelSpec {
            name: r.name,
            version: r.version,
            digest: r.digest,
            domain: r.domain,
            task: r.task,
            architecture: r.architecture,
            config_digest: r.config_digest,
            description: r.description,
            license: r.license,
            industries: r.industries,
            tags: r.tags,
            card: r.card,
            metrics: r.metrics.into_iter().collect(),
            parent: r.parent,
            inline: r.blobs.into_iter().map(|b| (b.digest, b.data)).collect(),
        };
        let reg = self.0.clone();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.publish_model(&p, spec)).await?,
        )))
    }

    async fn publish_tool(
        &self,
        req: Request<pb::PublishToolRequest>,
    ) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let spec = ToolSpec {
            name: r.name,
            version: r.version,
            digest: r.digest,
            tool_kind: r.tool_kind,
            description: r.description,
            license: r.license,
            industries: r.industries,
            tags: r.tags,
            card: r.card,
        };
        let reg = self.0.clone();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.publish_tool(&p, spec)).await?,
        )))
    }

    async fn publish_dataset(
        &self,
        req: Request<pb::PublishDatasetRequest>,
    ) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let spec = DatasetSpec {
            name: r.name,
            version: r.version,
            digest: r.digest,
            format: r.format,
            license: r.license,
            source: r.source,
            label_column: r.label_column,
            header: r.header,
            domain: r.domain,
            task: r.task,
            description: r.description,
            industries: r.industries,
            tags: r.tags,
            card: r.card,
            inline: r.blobs.into_iter().map(|b| (b.digest, b.data)).collect(),
        };
        let reg = self.0.clone();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.publish_dataset(&p, spec)).await?,
        )))
    }

    async fn publish_kit(
        &self,
        req: Request<pb::PublishKitRequest>,
    ) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let sigs = r
            .signatures
            .into_iter()
            .map(|s| Signature {
                key: s.key,
                signature: s.signature,
            })
            .collect();
        let reg = self.0.clone();
        // Dropped with this future when the caller goes away: the golden run stops.
        let cancel = crate::service::Cancel::new();
        let _stop_when_dropped = cancel.on_drop();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.publish_kit(&p, r.manifest, sigs, &r.private_to, &cancel)).await?,
        )))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let kind = kind_from_pb(r.kind)?;
        let reg = self.0.clone();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.get(&p, &r.reference, kind)).await?,
        )))
    }

    async fn relations(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::RelationsResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let kind = kind_from_pb(r.kind)?;
        let reg = self.0.clone();
        let rel = blocking(move || reg.relations(&p, &r.reference, kind)).await?;
        Ok(Response::new(pb::RelationsResponse {
            steps: rel
                .steps
                .into_iter()
                .map(|s| pb::StepUse {
                    step: s.step,
                    kind: s.kind,
                    digest: s.digest.to_string(),
                    size: s.size,
                    artifacts: s.artifacts,
                    inputs: s.inputs,
                    outputs: s.outputs,
                })
                .collect(),
            golden: rel
                .golden
                .into_iter()
                .map(|g| pb::GoldenUse {
                    inputs: g.inputs.into_iter().collect(),
                    expected: g.expected,
                    tolerance: g.tolerance,
                })
                .collect(),
            used_by: rel.used_by,
        }))
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let q = Query {
            viewer: Some(p),
            text: r.text,
            kind: kind_from_pb(r.kind)?,
            domain: r.domain,
            task: r.task,
            industry: r.industry,
            team: r.team,
            tool_kind: r.tool_kind,
            page_size: if r.page_size == 0 {
                50
            } else {
                r.page_size as usize
            },
            page_token: r.page_token,
            include_yanked: r.include_yanked,
            ..Query::default()
        };
        // The index is in memory: quick enough to answer on this thread.
        let page = self.0.search(&q)?;
        Ok(Response::new(pb::SearchResponse {
            artifacts: page.artifacts.into_iter().map(artifact_to_pb).collect(),
            next_page_token: page.next_page_token,
            total: page.total,
        }))
    }

    async fn yank(&self, req: Request<pb::YankRequest>) -> Result<Response<pb::Artifact>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let kind = kind_from_pb(r.kind)?;
        let reg = self.0.clone();
        Ok(Response::new(artifact_to_pb(
            blocking(move || reg.yank(&p, &r.reference, kind, r.undo)).await?,
        )))
    }

    async fn coverage(
        &self,
        req: Request<pb::CoverageRequest>,
    ) -> Result<Response<pb::CoverageResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let reg = self.0.clone();
        let c = blocking(move || RegistryApi::coverage(&*reg, &p)).await?;
        let m = |b: std::collections::BTreeMap<String, u64>| b.into_iter().collect();
        Ok(Response::new(pb::CoverageResponse {
            models_by_domain: m(c.models_by_domain),
            models_by_task: m(c.models_by_task),
            tools_by_kind: m(c.tools_by_kind),
            kits_by_industry: m(c.kits_by_industry),
            kits_by_scenario: m(c.kits_by_scenario),
            models: c.models,
            tools: c.tools,
            kits: c.kits,
            teams: c.teams,
            publishing_teams: c.publishing_teams,
            industries: c.industries,
            enterprises: c.enterprises,
            datasets: c.datasets,
            enterprises_served: c.enterprises_served,
            industries_served: c.industries_served,
            devices: c.devices,
            by_industry: slices(c.by_industry),
            by_domain: slices(c.by_domain),
        }))
    }
}

fn slices(
    m: std::collections::BTreeMap<String, crate::domain::CoverageSlice>,
) -> Vec<pb::CoverageSlice> {
    m.into_iter()
        .map(|(name, s)| pb::CoverageSlice {
            name,
            models: s.models,
            tools: s.tools,
            kits: s.kits,
            teams: s.teams,
            datasets: s.datasets,
            enterprises: s.enterprises,
            enterprises_served: s.enterprises_served,
            devices: s.devices,
        })
        .collect()
}

mod chunks;
mod fleet;
pub use fleet::FleetApi;
pub mod guard;
mod otlp;
mod training;
pub use otlp::{OtlpMetrics, OtlpTraces};
pub use training::{run_to_pb, TrainingApi};
