//! Plugin uploads in parts: a component larger than a frame (a Python or JavaScript plugin
//! embeds its interpreter: 12–19 MB) arrives as consecutive parts, staged here in memory,
//! then deployed as one. Every staged byte is bounded: by [`limits::MAX_PLUGIN_BYTES`] per
//! upload, by [`limits::PLUGIN_UPLOADS_MAX`] uploads at once, and an upload nobody added to
//! for [`limits::PLUGIN_UPLOAD_IDLE`] is forgotten.

use std::collections::HashMap;
use std::time::Instant;

use super::BrokerError;
use crate::limits;

/// One upload in progress.
struct Staged {
    total: u64,
    bytes: Vec<u8>,
    touched: Instant,
}

/// Uploads in progress, by plugin name and the upload id its client chose: two deploys of
/// one name at once stay apart, and a deploy takes only the parts its own client sent.
#[derive(Default)]
pub(super) struct Uploads {
    staged: std::sync::Mutex<HashMap<(String, u64), Staged>>,
}

impl Uploads {
    /// Add `bytes` at `offset` of the `total`-byte component `name`; offset 0 starts afresh.
    /// Returns the bytes received so far.
    pub(super) fn part(
        &self,
        name: &str,
        upload: u64,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> Result<u64, BrokerError> {
        let bad = |why: String| Err(BrokerError::BadRequest(format!("plugin upload of `{name}`: {why}")));
        if total == 0 || total > limits::MAX_PLUGIN_BYTES as u64 {
            return bad(format!("a component of {total} bytes; the limit is {} bytes", limits::MAX_PLUGIN_BYTES));
        }
        let mut staged = self.lock_fresh();
        let id = (name.to_string(), upload);
        if offset == 0 {
            staged.remove(&id);
            if staged.len() >= limits::PLUGIN_UPLOADS_MAX {
                return Err(BrokerError::Busy(format!(
                    "{} plugin uploads are in progress, the most at once; retry when one has been deployed",
                    staged.len()
                )));
            }
            // Reserved whole at the start, so appending never doubles the allocation.
            let mut buffer = Vec::new();
            buffer.reserve_exact(total as usize);
            staged.insert(id.clone(), Staged { total, bytes: buffer, touched: Instant::now() });
        }
        let Some(s) = staged.get_mut(&id) else {
            return bad(format!("a part at offset {offset} but no upload is in progress; start again at offset 0"));
        };
        let received = s.bytes.len() as u64;
        if s.total != total || offset != received {
            let expected = (s.total, received);
            staged.remove(&id);
            return bad(format!(
                "a part at offset {offset} of {total} bytes where offset {} of {} was expected; the upload was \
                 dropped: start again at offset 0",
                expected.1, expected.0
            ));
        }
        if received + bytes.len() as u64 > total {
            staged.remove(&id);
            return bad(format!("parts add up to more than the announced {total} bytes; start again at offset 0"));
        }
        s.bytes.extend_from_slice(bytes);
        s.touched = Instant::now();
        Ok(s.bytes.len() as u64)
    }

    /// The staged uploads, without those idle past [`limits::PLUGIN_UPLOAD_IDLE`].
    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Staged>> {
        let mut staged = self.staged.lock().expect("uploads lock");
        staged.retain(|_, s| s.touched.elapsed() < limits::PLUGIN_UPLOAD_IDLE);
        staged
    }

    /// The complete upload `upload` of `name`, taken out of staging.
    pub(super) fn take(&self, name: &str, upload: u64) -> Result<Vec<u8>, BrokerError> {
        let mut staged = self.lock_fresh();
        match staged.remove(&(name.to_string(), upload)) {
            Some(s) if s.bytes.len() as u64 == s.total => Ok(s.bytes),
            Some(s) => Err(BrokerError::BadRequest(format!(
                "the upload of `{name}` holds {} of {} bytes; send the remaining parts, then deploy",
                s.bytes.len(),
                s.total
            ))),
            None => Err(BrokerError::BadRequest(format!(
                "no upload of `{name}` to deploy (uploads idle for {} s are forgotten); upload its parts first",
                limits::PLUGIN_UPLOAD_IDLE.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_assemble_in_order_and_anything_else_is_refused() {
        let u = Uploads::default();
        assert_eq!(u.part("p", 1, 0, 6, b"abc").unwrap(), 3);
        assert!(u.take("p", 1).unwrap_err().to_string().contains("3 of 6"));
        assert_eq!(u.part("p", 1, 0, 6, b"abc").unwrap(), 3);
        assert!(u.part("p", 1, 4, 6, b"x").unwrap_err().to_string().contains("offset 3 of 6 was expected"));
        assert!(u.part("p", 1, 3, 6, b"def").unwrap_err().to_string().contains("no upload"));
        u.part("p", 1, 0, 6, b"abc").unwrap();
        assert!(u.part("p", 1, 3, 6, b"defg").unwrap_err().to_string().contains("more than"));
        u.part("p", 1, 0, 6, b"abc").unwrap();
        u.part("p", 1, 3, 6, b"def").unwrap();
        assert_eq!(u.take("p", 1).unwrap(), b"abcdef");
        assert!(u.take("p", 1).unwrap_err().to_string().contains("no upload"));
        assert!(u.part("p", 1, 0, 0, b"").is_err());
        assert!(
            u.part("p", 1, 0, limits::MAX_PLUGIN_BYTES as u64 + 1, b"a").unwrap_err().to_string().contains("limit")
        );
    }

    #[test]
    fn uploads_at_once_are_bounded() {
        let u = Uploads::default();
        for i in 0..limits::PLUGIN_UPLOADS_MAX {
            u.part(&format!("p{i}"), 1, 0, 10, b"a").unwrap();
        }
        assert!(u.part("one-more", 1, 0, 10, b"a").unwrap_err().to_string().contains("in progress"));
        // Restarting one that is staged is not a new slot.
        u.part("p0", 1, 0, 10, b"a").unwrap();
    }

    #[test]
    fn two_uploads_of_one_name_stay_apart() {
        let u = Uploads::default();
        u.part("p", 1, 0, 3, b"abc").unwrap();
        u.part("p", 2, 0, 3, b"xyz").unwrap();
        assert_eq!(u.take("p", 2).unwrap(), b"xyz");
        assert_eq!(u.take("p", 1).unwrap(), b"abc");
    }
}
