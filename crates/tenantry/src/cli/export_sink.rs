//! Where `tenantry tenant export` writes a bundle: the file, flushed to disk while it grows, and
//! a verifier reading the same bytes on a thread of its own. Both overlap the download, so an
//! export that says it is done has a bundle that is on disk and checked, in about the time the
//! slower of the three takes rather than their sum.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// How much is written between two background flushes.
const FLUSH_EVERY: u64 = 64 << 20;

type Verdict = Result<tenantry_bundle::Manifest, tenantry_bundle::BundleError>;

pub struct ExportSink {
    file: File,
    unflushed: u64,
    flushing: Option<JoinHandle<std::io::Result<()>>>,
    verifier: Option<(SyncSender<Vec<u8>>, JoinHandle<Verdict>)>,
}

impl ExportSink {
    pub fn new(file: File) -> ExportSink {
        let (tx, rx) = sync_channel::<Vec<u8>>(64);
        let verifier = std::thread::spawn(move || {
            let input = ChunkReader { rx, chunk: Vec::new(), at: 0 };
            tenantry_bundle::verify(BufReader::with_capacity(256 << 10, input)).map(|(_, m)| m)
        });
        ExportSink { file, unflushed: 0, flushing: None, verifier: Some((tx, verifier)) }
    }

    fn wait_for_flush(&mut self) -> std::io::Result<()> {
        match self.flushing.take() {
            Some(h) => h.join().unwrap_or_else(|_| Err(std::io::Error::other("flushing thread panicked"))),
            None => Ok(()),
        }
    }

    /// Makes the whole file durable and returns the verifier's verdict on what was written.
    pub fn finish(mut self) -> std::io::Result<Verdict> {
        self.wait_for_flush()?;
        self.file.sync_all()?;
        let (tx, verifier) = self.verifier.take().expect("finished once");
        drop(tx); // end of input
        Ok(verifier
            .join()
            .unwrap_or_else(|_| Err(tenantry_bundle::BundleError::from(std::io::Error::other("verifier panicked")))))
    }
}

impl Write for ExportSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        if let Some((tx, _)) = &self.verifier {
            // A verifier that stopped (the bundle is already bad) reports so at `finish`.
            let _ = tx.send(buf.to_vec());
        }
        self.unflushed += buf.len() as u64;
        // Start writeback now rather than leave it all to the final fsync; one flush at a time.
        if self.unflushed >= FLUSH_EVERY && self.flushing.as_ref().is_none_or(|h| h.is_finished()) {
            self.wait_for_flush()?;
            let f = self.file.try_clone()?;
            self.flushing = Some(std::thread::spawn(move || f.sync_data()));
            self.unflushed = 0;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The chunks sent by the sink, as one `Read`; ends when the sink is finished.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => (self.chunk, self.at) = (next, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: usize) -> Vec<u8> {
        let header = tenantry_bundle::Header::new(serde_json::json!({"name": "t"}), "2026-11-23T00:00:00.000Z".into());
        let mut w = tenantry_bundle::Writer::new(Vec::new(), &header).unwrap();
        for i in 0..files {
            let content = vec![i as u8; 100_000 + i];
            let at = "2026-01-02T03:04:05.006Z";
            let meta =
                tenantry_bundle::FileMeta::describing(&format!("/f/{i}"), &content, "application/octet-stream", at);
            w.file(&meta, content.as_slice()).unwrap();
        }
        w.finish().unwrap().1
    }

    fn through_sink(bytes: &[u8]) -> (Verdict, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tenantry");
        let mut sink = ExportSink::new(File::create(&path).unwrap());
        for chunk in bytes.chunks(7_777) {
            sink.write_all(chunk).unwrap();
        }
        let verdict = sink.finish().unwrap();
        (verdict, std::fs::read(&path).unwrap())
    }

    #[test]
    fn a_whole_bundle_is_written_as_received_and_verifies() {
        let b = bundle(12);
        let (verdict, written) = through_sink(&b);
        assert_eq!(written, b);
        let m = verdict.unwrap();
        assert_eq!((m.files, m.file_bytes), (12, 12 * 100_000 + 66));
    }

    #[test]
    fn a_truncated_or_altered_bundle_is_written_but_does_not_verify() {
        let b = bundle(3);
        assert!(through_sink(&b[..b.len() - 10]).0.is_err());
        let mut altered = b.clone();
        altered[b.len() / 2] ^= 1;
        assert!(through_sink(&altered).0.is_err());
    }
}
