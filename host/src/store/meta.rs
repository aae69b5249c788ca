//! Metadata records as the store interface carries them: each kind of record (an exchange, a
//! pipeline, a plugin version …) is encoded by the module that owns it, once for the on-disk
//! format (`storage::stored`, RocksDB) and once for the cluster's wire format
//! (`cluster::wire`, JetStream), so neither store ever holds the other's types.

use bytes::Bytes;

use crate::storage::{Result, StoreError};

/// A metadata record: both stores' encodings of it.
pub trait Record: Sized {
    /// As RocksDB keeps it (the on-disk format's type).
    fn to_disk(&self) -> Bytes;
    /// From RocksDB.
    fn from_disk(key: &str, bytes: &[u8]) -> Result<Self>;
    /// As JetStream keeps it (the cluster's wire type).
    fn to_cluster(&self) -> Bytes;
    /// From JetStream.
    fn from_cluster(key: &str, bytes: &[u8]) -> Result<Self>;
}

/// Implement [`Record`] for `$ours` through the disk type `$disk` (`storage::stored`) and the
/// cluster type `$wire` (`cluster::wire`), with the `From` conversions both ways written by
/// the owning module (`mirror!`).
macro_rules! record {
    ($ours:ty => $disk:ty, $wire:ty) => {
        impl $crate::store::Record for $ours {
            fn to_disk(&self) -> bytes::Bytes {
                $crate::storage::stored::encode(&<$disk>::from(self.clone())).into()
            }
            fn from_disk(key: &str, bytes: &[u8]) -> $crate::storage::Result<Self> {
                Ok($crate::storage::stored::decode::<$disk>(key, bytes)?.into())
            }
            fn to_cluster(&self) -> bytes::Bytes {
                $crate::cluster::wire::encode(&<$wire>::from(self.clone())).into()
            }
            fn from_cluster(key: &str, bytes: &[u8]) -> $crate::storage::Result<Self> {
                Ok($crate::cluster::wire::decode::<$wire>(key, bytes)?.into())
            }
        }
    };
}
pub(crate) use record;

/// Numbers (version pointers, id sequences): 4 big-endian bytes in both stores.
impl Record for u32 {
    fn to_disk(&self) -> Bytes {
        Bytes::copy_from_slice(&self.to_be_bytes())
    }
    fn from_disk(key: &str, bytes: &[u8]) -> Result<Self> {
        let b: [u8; 4] =
            bytes.try_into().map_err(|_| StoreError::Corrupt { what: key.to_string(), why: "not 4 bytes".into() })?;
        Ok(u32::from_be_bytes(b))
    }
    fn to_cluster(&self) -> Bytes {
        self.to_disk()
    }
    fn from_cluster(key: &str, bytes: &[u8]) -> Result<Self> {
        Self::from_disk(key, bytes)
    }
}

/// Opaque bytes each store keeps as given: component bytes, and records whose owner defines
/// their layout once for both (an idempotent producer's window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Bytes);

impl Record for Raw {
    fn to_disk(&self) -> Bytes {
        self.0.clone()
    }
    fn from_disk(_: &str, bytes: &[u8]) -> Result<Self> {
        Ok(Raw(Bytes::copy_from_slice(bytes)))
    }
    fn to_cluster(&self) -> Bytes {
        self.0.clone()
    }
    fn from_cluster(_: &str, bytes: &[u8]) -> Result<Self> {
        Ok(Raw(Bytes::copy_from_slice(bytes)))
    }
}

/// What a write expects of the key before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the write replaces whatever is there.
    Any,
    /// The key holds nothing (a create): otherwise the whole write is refused with
    /// [`StoreError::Conflict`].
    Absent,
}

/// One metadata change, in both encodings (the store picks its own).
#[derive(Debug, Clone)]
pub struct MetaWrite {
    /// Key (`keys::meta`).
    pub key: String,
    /// `(disk, cluster)` encodings, or `None` to delete.
    pub value: Option<(Bytes, Bytes)>,
    /// What the key must hold before.
    pub expect: Expect,
}

impl MetaWrite {
    /// Store `record` at `key`.
    pub fn put(key: impl Into<String>, record: &impl Record) -> MetaWrite {
        MetaWrite { key: key.into(), value: Some((record.to_disk(), record.to_cluster())), expect: Expect::Any }
    }

    /// Store `record` at `key`, which must be free.
    pub fn create(key: impl Into<String>, record: &impl Record) -> MetaWrite {
        MetaWrite { expect: Expect::Absent, ..MetaWrite::put(key, record) }
    }

    /// Delete `key`.
    pub fn delete(key: impl Into<String>) -> MetaWrite {
        MetaWrite { key: key.into(), value: None, expect: Expect::Any }
    }
}
