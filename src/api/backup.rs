//! `GET /v1/admin/backup` (admin token only): a consistent copy of the whole database.
//! The store copies every table inside one read transaction into a new file beside the
//! database; that file is unlinked as soon as it is open and streamed from disk in small
//! chunks, so memory stays bounded whatever the size and nothing is left behind. One
//! backup runs at a time.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiError, AppState};
use crate::ids::uuid_v7;

/// Bytes read from the copy per frame.
const CHUNK: usize = 64 * 1024;

pub const PATH: &str = "/v1/admin/backup";

/// `GET /v1/admin/backup`; the route table lets only the admin token through.
pub async fn get(state: &AppState) -> Result<Response<FileBody>, ApiError> {
    let permit = state.backup_slot.clone().try_acquire_owned().map_err(|_| {
        ApiError::Conflict("a backup is being made already; try again when it is done".into())
    })?;
    let db = &state.config.storage.path;
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".backup-{:032x}.tmp", uuid_v7()));
    // Beside the database: the service may write there, and it is one file system.
    let dest = db.with_file_name(name);
    let made = state.store.backup(dest.clone()).await;
    let opened = match made {
        Ok(info) => tokio::fs::File::open(&dest).await.map(|file| (info, file)),
        Err(error) => {
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(error.into());
        }
    };
    // Unlinked now, the copy lives exactly as long as the open file.
    let _ = tokio::fs::remove_file(&dest).await;
    let (info, file) = opened.map_err(ApiError::internal)?;
    tracing::info!(
        bytes = info.bytes,
        events = info.events,
        deliveries = info.deliveries,
        "streaming a backup"
    );
    let body = FileBody {
        file,
        remaining: info.bytes,
        buffer: vec![0; CHUNK],
        _permit: permit,
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.bytes));
    let filename = format!(
        "attachment; filename=\"hookd-{}.redb\"",
        crate::payload::timestamp(crate::store::now_ms()).replace(':', "-")
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A file streamed in `CHUNK`s, exactly `remaining` bytes long; holds the backup slot
/// until the client has it all or goes away.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buffer: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let want = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        let mut buf = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the backup copy ended early",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(buf.filled());
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The slot a backup holds.
pub fn slot() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(1))
}
