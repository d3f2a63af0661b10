//! Storage errors.

use meridian_types::GroupId;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    #[error("corrupt record in group {group} at {what}: {detail}")]
    Corruption {
        group: GroupId,
        what: String,
        detail: String,
    },
    #[error("storage i/o: {0}")]
    Io(String),
    #[error("storage is shut down")]
    Closed,
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        let kind = match e {
            StorageError::Corruption { .. } => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e.to_string())
    }
}
