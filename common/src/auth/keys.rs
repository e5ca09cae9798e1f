//! The HMAC-SHA256 keys tokens and links are signed with, read from the files `[auth] keys`
//! names. Several keys make rotation possible: tokens name theirs by `kid`, new ones are
//! signed with the first; a key removed from the file is revoked.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::config::AuthConfig;

/// Shortest secret accepted, in bytes: RFC 7518 §3.2 asks HS256 keys to be at least as
/// long as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

/// One key: its id and secret. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    secret: Arc<[u8]>,
}

impl Key {
    /// A key from its secret bytes; errors when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(id: &str, secret: &[u8]) -> Result<Key, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "key {id:?} is {} bytes; use at least {MIN_SECRET_BYTES} (e.g. 64 hex digits)",
                secret.len()
            ));
        }
        Ok(Key {
            id: id.to_string(),
            secret: secret.into(),
        })
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys of `[auth] keys`, in the file's order.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    pub fn new(keys: Vec<Key>) -> KeyRing {
        KeyRing { keys }
    }

    /// Reads every key file of `auth` (paths relative to `config_dir`); a file's content
    /// with trailing whitespace removed is the secret, bytes as they are.
    ///
    /// Errors: one message per unreadable or too short key, naming the key and its file
    /// (never its content).
    pub fn load(auth: &AuthConfig, config_dir: &Path) -> Result<KeyRing, Vec<String>> {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for (i, k) in auth.keys.iter().enumerate() {
            let path = config_dir.join(&k.secret_file);
            match std::fs::read(&path) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
                        bytes.pop();
                    }
                    match Key::new(&k.id, &bytes) {
                        Ok(key) => keys.push(key),
                        Err(e) => problems.push(format!("auth.keys[{i}]: {e}")),
                    }
                }
                Err(e) => problems.push(format!(
                    "auth.keys[{i}] ({:?}): cannot read {}: {e}",
                    k.id,
                    path.display()
                )),
            }
        }
        if problems.is_empty() {
            Ok(KeyRing { keys })
        } else {
            Err(problems)
        }
    }

    /// The key new tokens are signed with: the first.
    pub fn signing(&self) -> Option<&Key> {
        self.keys.first()
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }
}
