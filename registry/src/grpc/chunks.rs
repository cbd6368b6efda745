//! Upload streams, chunk by chunk: proving possession of a stored blob,
//! an upload beside another principal's unfinished one, the idle timeout
//! and per-chunk digests.

use std::sync::Arc;

use sha2::Digest as _;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use algobay_proto::v1 as pb;
use algobay_runtime::Digest;

use super::{blocking, parse_digest};
use crate::error::RegistryError;
use crate::service::RegistryApi;

/// Takes a whole upload of a blob already stored, hashing it and keeping
/// nothing: the caller shows it holds the bytes before it is told they are here.
pub(super) async fn prove_possession(
    d: &Digest,
    size: u64,
    first: [Option<pb::UploadChunk>; 2],
    stream: &mut Streaming<pb::UploadChunk>,
    idle: std::time::Duration,
) -> Result<(), Status> {
    let mut it = first.into_iter().flatten();
    let mut hasher = sha2::Sha256::new();
    let mut received = 0u64;
    loop {
        let c = match it.next() {
            Some(c) => c,
            None => match next_chunk(stream, idle, received).await? {
                Some(c) => c,
                None => break,
            },
        };
        if c.offset != received {
            return Err(RegistryError::invalid(
                "offset",
                format!("chunk at byte {} where {received} was expected", c.offset),
            )
            .into());
        }
        received += c.data.len() as u64;
        if received > size {
            break;
        }
        hasher.update(&c.data);
    }
    let got: [u8; 32] = hasher.finalize().into();
    if received != size || &got != d.as_bytes() {
        return Err(RegistryError::invalid(
            "data",
            format!("the {received} bytes sent are not the blob {d}"),
        )
        .into());
    }
    Ok(())
}

/// The next chunk of an upload, or the end of the stream; an upload that sends
/// nothing for `idle` is dropped (it can resume from the bytes received).
/// An upload beside another principal's unfinished one of the same blob: the
/// whole stream is hashed, bytes the partial already holds are not written
/// again, the rest are added; the blob is finished only when the stream's
/// bytes hash to `d`. Returns its size.
pub(super) async fn upload_beside(
    reg: &Arc<dyn RegistryApi>,
    d: Digest,
    size: u64,
    partial: u64,
    first: [Option<pb::UploadChunk>; 2],
    stream: &mut Streaming<pb::UploadChunk>,
    idle: std::time::Duration,
) -> Result<u64, Status> {
    let mut it = first.into_iter().flatten();
    let mut hasher = sha2::Sha256::new();
    let (mut pos, mut held) = (0u64, partial);
    loop {
        let c = match it.next() {
            Some(c) => c,
            None => match next_chunk(stream, idle, 0).await? {
                Some(c) => c,
                None => break,
            },
        };
        if c.offset != pos {
            return Err(RegistryError::invalid(
                "offset",
                format!("chunk at byte {} where {pos} was expected", c.offset),
            )
            .into());
        }
        let len = c.data.len() as u64;
        if pos + len > size {
            return Err(RegistryError::invalid(
                "data",
                format!("more than the {size} bytes of {d}"),
            )
            .into());
        }
        hasher.update(&c.data);
        let skip = held.saturating_sub(pos).min(len) as usize;
        pos += len;
        if skip < c.data.len() {
            let reg = reg.clone();
            let at = held;
            held = blocking(move || reg.blobs().append(&d, at, &c.data[skip..])).await?;
        }
    }
    let got: [u8; 32] = hasher.finalize().into();
    if pos != size || &got != d.as_bytes() {
        return Err(RegistryError::FailedPrecondition(format!(
            "upload of {d}: {pos} of {size} bytes came, and they must all come, from byte 0, and hash to it"
        ))
        .into());
    }
    let reg = reg.clone();
    blocking(move || reg.blobs().finish(&d)).await
}

pub(super) async fn next_chunk(
    stream: &mut Streaming<pb::UploadChunk>,
    idle: std::time::Duration,
    received: u64,
) -> Result<Option<pb::UploadChunk>, Status> {
    match tokio::time::timeout(idle, stream.next()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "upload idle for {} s; resume from byte {received}",
            idle.as_secs()
        ))),
        Ok(None) => Ok(None),
        Ok(Some(c)) => c.map(Some).map_err(algobay_proto::status::decode_status),
    }
}

/// Checks a chunk against the digest its sender gave for it.
pub(super) fn check_chunk(d: &Digest, received: u64, c: &pb::UploadChunk) -> Result<(), Status> {
    let want = parse_digest("chunk_digest", &c.chunk_digest)?;
    let got: [u8; 32] = sha2::Sha256::digest(&c.data).into();
    if &got != want.as_bytes() {
        return Err(RegistryError::invalid(
            "chunk_digest",
            format!(
                "chunk at byte {received} of {d} does not match its digest {want}; resume from byte {received}"
            ),
        )
        .into());
    }
    Ok(())
}
