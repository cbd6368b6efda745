//! Blob transfers: uploads that resume after what the registry already has,
//! and downloads verified against their digest, to memory or to a file.

use std::io::Write;
use std::path::Path;

use super::*;

impl Client {
    /// Uploads bytes, resuming after whatever the registry already has, sending
    /// nothing when it has them all. `progress(done, total)` is called per chunk.
    pub async fn upload(&self, data: &[u8], progress: Progress) -> Result<Uploaded> {
        let d = Digest::of(data);
        let st = self
            .blobs()
            .stat(self.req(pb::StatBlobRequest {
                digest: d.to_string(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        let total = data.len() as u64;
        if st.present {
            progress(total, total);
            return Ok(Uploaded {
                sent: 0,
                existed: true,
            });
        }
        let from = st.received.min(total) as usize;
        let ds = d.to_string();
        let mut chunks: Vec<pb::UploadChunk> = data[from..]
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, c)| pb::UploadChunk {
                digest: ds.clone(),
                size: total,
                offset: (from + i * CHUNK) as u64,
                data: c.to_vec(),
                chunk_digest: Digest::of(c).to_string(),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::UploadChunk {
                digest: ds.clone(),
                size: total,
                offset: from as u64,
                ..Default::default()
            });
        }
        let stream = tokio_stream::iter(
            chunks
                .into_iter()
                .inspect(move |c| progress(c.offset + c.data.len() as u64, total)),
        );
        let r = self.blobs().upload(self.req(stream)).await?.into_inner();
        Ok(Uploaded {
            sent: if r.existed { 0 } else { total - from as u64 },
            existed: r.existed,
        })
    }

    /// Downloads a blob into `dest`, resuming a `dest.partial` left by an interrupted
    /// download, and checks its digest before the file gets its name.
    pub async fn download_to(&self, digest: &str, dest: &Path, progress: Progress) -> Result<u64> {
        let d: Digest = digest.parse()?;
        let partial = std::path::PathBuf::from(format!("{}.partial", dest.display()));
        let io = |p: &Path, e: std::io::Error| SdkError::Io {
            path: p.display().to_string(),
            source: e,
        };
        let mut have = std::fs::read(&partial).unwrap_or_default();
        let mut s = self
            .blobs()
            .download(self.req(pb::DownloadRequest {
                digest: d.to_string(),
                offset: have.len() as u64,
                ..Default::default()
            }))
            .await;
        if matches!(&s, Err(st) if st.code() == Code::InvalidArgument && !have.is_empty()) {
            // The partial file is longer than the blob: start over.
            have.clear();
            s = self
                .blobs()
                .download(self.req(pb::DownloadRequest {
                    digest: d.to_string(),
                    offset: 0,
                    ..Default::default()
                }))
                .await;
        }
        let mut s = s?.into_inner();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| io(&partial, e))?;
        f.write_all(&have).map_err(|e| io(&partial, e))?;
        while let Some(c) = s.message().await? {
            f.write_all(&c.data).map_err(|e| io(&partial, e))?;
            have.extend_from_slice(&c.data);
            progress(have.len() as u64, c.size);
        }
        f.sync_all().map_err(|e| io(&partial, e))?;
        d.verify(&dest.display().to_string(), &have)?;
        std::fs::rename(&partial, dest).map_err(|e| io(dest, e))?;
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty());
        algobay_runtime::fsx::sync_dir(dir.unwrap_or(std::path::Path::new(".")))
            .map_err(|e| io(dest, e))?;
        Ok(have.len() as u64)
    }

    /// Downloads a blob into memory, verified.
    pub async fn download(&self, digest: &str) -> Result<Vec<u8>> {
        self.download_for(digest, "").await
    }

    /// [`Self::download`] of an enterprise's sample input (an operator names the enterprise).
    pub async fn download_for(&self, digest: &str, enterprise: &str) -> Result<Vec<u8>> {
        let d: Digest = digest.parse()?;
        let mut s = self
            .blobs()
            .download(self.req(pb::DownloadRequest {
                digest: d.to_string(),
                offset: 0,
                enterprise: enterprise.into(),
            }))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(c) = s.message().await? {
            out.extend_from_slice(&c.data);
        }
        d.verify(digest, &out)?;
        Ok(out)
    }
}
