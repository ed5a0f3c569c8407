//! Content encryption, chunk by chunk, before anything leaves the process.
//!
//! An object is a 5-byte header (`TDOC` and a format version) and then frames, each
//! one [`SecretKey::seal`] of up to [`CHUNK_LEN`] plaintext bytes:
//! `nonce (12) || ciphertext || tag (16)`. Every frame but the last holds exactly
//! `CHUNK_LEN` bytes; the last holds 0 to `CHUNK_LEN`. A frame's associated data binds
//! the tenant, the document, the frame's index and whether it is the last one, so an
//! object moved to another tenant or document, frames reordered, dropped or
//! duplicated, and an object cut short (even at a frame boundary) all fail to open.
//!
//! This module holds plaintext only one chunk at a time and never logs it.

use bytes::{Buf, Bytes, BytesMut};
use identity::keyring::SecretKey;
use kernel::TenantId;

use crate::category::DocumentId;

/// Plaintext bytes per frame.
pub const CHUNK_LEN: usize = 64 * 1024;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Ciphertext bytes of a full frame.
pub const FRAME_LEN: usize = NONCE_LEN + CHUNK_LEN + TAG_LEN;
/// Identifies the format, so that a later one can be told apart.
pub const HEADER: &[u8; 5] = b"TDOC\x01";

fn frame_aad(tenant_id: TenantId, document_id: DocumentId, index: u64, last: bool) -> [u8; 58] {
    let mut aad = [0u8; 58];
    aad[..17].copy_from_slice(b"tenet-document-v1");
    aad[17..33].copy_from_slice(tenant_id.as_uuid().as_bytes());
    aad[33..49].copy_from_slice(document_id.as_uuid().as_bytes());
    aad[49..57].copy_from_slice(&index.to_be_bytes());
    aad[57] = u8::from(last);
    aad
}

/// Seals a document's plaintext as it arrives.
pub struct Sealer {
    key: SecretKey,
    tenant_id: TenantId,
    document_id: DocumentId,
    index: u64,
    pending: BytesMut,
    header_written: bool,
}

impl Sealer {
    pub fn new(key: SecretKey, tenant_id: TenantId, document_id: DocumentId) -> Self {
        Self {
            key,
            tenant_id,
            document_id,
            index: 0,
            pending: BytesMut::with_capacity(CHUNK_LEN),
            header_written: false,
        }
    }

    /// Takes more plaintext; returns the ciphertext ready to be written (possibly
    /// empty). A chunk is sealed only once more data follows it, because whether it
    /// is the last one is part of its associated data.
    pub fn push(&mut self, mut plaintext: &[u8]) -> Vec<u8> {
        let mut out = self.header();
        while !plaintext.is_empty() {
            let room = CHUNK_LEN + 1 - self.pending.len();
            let take = room.min(plaintext.len());
            self.pending.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
            if self.pending.len() > CHUNK_LEN {
                let chunk = self.pending.split_to(CHUNK_LEN);
                out.extend_from_slice(&self.seal(&chunk, false));
            }
        }
        out
    }

    /// Seals what is left as the last frame.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = self.header();
        let chunk = std::mem::take(&mut self.pending);
        out.extend_from_slice(&self.seal(&chunk, true));
        out
    }

    fn header(&mut self) -> Vec<u8> {
        if self.header_written {
            Vec::new()
        } else {
            self.header_written = true;
            HEADER.to_vec()
        }
    }

    fn seal(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        let aad = frame_aad(self.tenant_id, self.document_id, self.index, last);
        self.index += 1;
        self.key.seal(chunk, &aad)
    }
}

/// The object does not open: altered, cut short, or not this document's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the document's content does not decrypt: it was altered, truncated or moved")]
pub struct Undecryptable;

/// Opens a document's ciphertext as it arrives.
pub struct Opener {
    key: SecretKey,
    tenant_id: TenantId,
    document_id: DocumentId,
    index: u64,
    pending: BytesMut,
    header_checked: bool,
}

impl Opener {
    pub fn new(key: SecretKey, tenant_id: TenantId, document_id: DocumentId) -> Self {
        Self {
            key,
            tenant_id,
            document_id,
            index: 0,
            pending: BytesMut::new(),
            header_checked: false,
        }
    }

    /// Takes more ciphertext; returns the plaintext of every frame that is known not
    /// to be the last.
    pub fn push(&mut self, ciphertext: &[u8]) -> Result<Vec<Bytes>, Undecryptable> {
        self.pending.extend_from_slice(ciphertext);
        if !self.header_checked {
            if self.pending.len() < HEADER.len() {
                return Ok(Vec::new());
            }
            if &self.pending[..HEADER.len()] != HEADER {
                return Err(Undecryptable);
            }
            self.pending.advance(HEADER.len());
            self.header_checked = true;
        }
        let mut out = Vec::new();
        while self.pending.len() > FRAME_LEN {
            let frame = self.pending.split_to(FRAME_LEN);
            out.push(self.open(&frame, false)?);
        }
        Ok(out)
    }

    /// Opens the last frame: what is left must be exactly one.
    pub fn finish(mut self) -> Result<Bytes, Undecryptable> {
        if !self.header_checked || self.pending.len() < NONCE_LEN + TAG_LEN {
            return Err(Undecryptable);
        }
        let frame = std::mem::take(&mut self.pending);
        self.open(&frame, true)
    }

    fn open(&mut self, frame: &[u8], last: bool) -> Result<Bytes, Undecryptable> {
        let aad = frame_aad(self.tenant_id, self.document_id, self.index, last);
        self.index += 1;
        self.key
            .open(frame, &aad)
            .map(Bytes::from)
            .ok_or(Undecryptable)
    }
}

/// The ciphertext length of `plaintext_len` bytes of content.
pub fn sealed_len(plaintext_len: u64) -> u64 {
    let chunk = CHUNK_LEN as u64;
    let frames = if plaintext_len == 0 {
        1
    } else {
        plaintext_len.div_ceil(chunk)
    };
    HEADER.len() as u64 + plaintext_len + frames * (NONCE_LEN + TAG_LEN) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, DocumentId) {
        (TenantId::generate(), DocumentId::generate())
    }

    fn seal_all(
        key: &SecretKey,
        tenant_id: TenantId,
        document_id: DocumentId,
        parts: &[&[u8]],
    ) -> Vec<u8> {
        let mut sealer = Sealer::new(key.clone(), tenant_id, document_id);
        let mut out = Vec::new();
        for part in parts {
            out.extend(sealer.push(part));
        }
        out.extend(sealer.finish());
        out
    }

    fn open_all(
        key: &SecretKey,
        tenant_id: TenantId,
        document_id: DocumentId,
        sealed: &[u8],
        step: usize,
    ) -> Result<Vec<u8>, Undecryptable> {
        let mut opener = Opener::new(key.clone(), tenant_id, document_id);
        let mut out = Vec::new();
        for part in sealed.chunks(step.max(1)) {
            for chunk in opener.push(part)? {
                out.extend_from_slice(&chunk);
            }
        }
        out.extend_from_slice(&opener.finish()?);
        Ok(out)
    }

    #[test]
    fn content_of_every_length_round_trips_whatever_the_pieces() {
        let key = SecretKey::generate();
        let (tenant_id, document_id) = ids();
        for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal_all(
                &key,
                tenant_id,
                document_id,
                &[&content[..len / 3], &content[len / 3..]],
            );
            assert_eq!(sealed.len() as u64, sealed_len(len as u64));
            for step in [1000, 7, FRAME_LEN] {
                assert_eq!(
                    open_all(&key, tenant_id, document_id, &sealed, step).unwrap(),
                    content
                );
            }
        }
    }

    #[test]
    fn an_object_cut_at_a_frame_boundary_or_moved_does_not_open() {
        let key = SecretKey::generate();
        let (tenant_id, document_id) = ids();
        let content = vec![7u8; 2 * CHUNK_LEN + 10];
        let sealed = seal_all(&key, tenant_id, document_id, &[&content]);
        let cut = &sealed[..HEADER.len() + FRAME_LEN];
        assert_eq!(
            open_all(&key, tenant_id, document_id, cut, 4096),
            Err(Undecryptable)
        );
        assert_eq!(
            open_all(&key, tenant_id, DocumentId::generate(), &sealed, 4096),
            Err(Undecryptable)
        );
        let mut reordered = sealed[..HEADER.len()].to_vec();
        reordered
            .extend_from_slice(&sealed[HEADER.len() + FRAME_LEN..HEADER.len() + 2 * FRAME_LEN]);
        reordered.extend_from_slice(&sealed[HEADER.len()..HEADER.len() + FRAME_LEN]);
        reordered.extend_from_slice(&sealed[HEADER.len() + 2 * FRAME_LEN..]);
        assert_eq!(
            open_all(&key, tenant_id, document_id, &reordered, 4096),
            Err(Undecryptable)
        );
    }
}
