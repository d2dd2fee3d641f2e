//! Tenants: which token writes to and reads which part of the store.
//!
//! `--tenants FILE` (TOML, re-read when it changes; a bad file keeps the last good one):
//!
//! ```toml
//! [[tenants]]
//! name = "acme"
//! token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! token = "plain"            # accepted, with a warning in the log
//! spans_per_second = 5000    # optional quotas
//! retention = "24h"
//! max_stored_bytes = 1000000000
//! ```
//!
//! Each tenant gets a stable id (kept in the store's `meta` family, by name), the prefix
//! every key of its data already has; the default tenant (id 0) is what fctrace uses
//! without a tenants file. A token is looked up by its SHA-256, so what is compared is a
//! digest, never the token, and neither is ever logged. This module owns the file, the
//! ids and the lookup; receivers and the query side ask it who a request is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::keys::Tenant;
use crate::store::Store;

/// Tenants a file may name (ids are 16 bits; 0 is the default tenant).
pub const MAX_TENANTS: usize = 10_000;
/// Tokens shorter than this are refused: they would be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    token_sha256: Option<OneOrMany>,
    token: Option<OneOrMany>,
    spans_per_second: Option<f64>,
    retention: Option<String>,
    max_stored_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tenants: Vec<RawTenant>,
}

/// One tenant's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec {
    pub name: String,
    pub id: Tenant,
    pub spans_per_second: Option<f64>,
    pub retention: Option<std::time::Duration>,
    pub max_stored_bytes: Option<u64>,
}

/// A request's tenant, once its token was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Who {
    pub id: Tenant,
    pub name: String,
}

#[derive(Debug, Default)]
struct Table {
    by_digest: HashMap<[u8; 32], Arc<TenantSpec>>,
    by_name: HashMap<String, Arc<TenantSpec>>,
    by_id: HashMap<Tenant, Arc<TenantSpec>>,
}

/// The tenants in effect: none (tenancy off) or a file's.
pub struct Tenancy {
    path: Option<PathBuf>,
    table: RwLock<Arc<Table>>,
    store: Arc<Store>,
    /// Tokens fctrace made for its own functions' spans (`ingest_token`), by digest; they
    /// last as long as the process and work while their tenant is in the file.
    internal: RwLock<HashMap<[u8; 32], Tenant>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

const ID_KEY: &[u8] = b"tenant-id:";
const NEXT_KEY: &[u8] = b"tenant-next-id";

impl Tenancy {
    /// Tenancy off: every request is the default tenant's.
    pub fn off(store: Arc<Store>) -> Tenancy {
        Tenancy {
            path: None,
            table: RwLock::new(Arc::default()),
            store,
            internal: RwLock::default(),
        }
    }

    /// Read `path`; a bad file at start is an error.
    pub fn load(path: &Path, store: Arc<Store>) -> Result<Tenancy, String> {
        let t = Tenancy {
            path: Some(path.to_owned()),
            table: RwLock::new(Arc::default()),
            store,
            internal: RwLock::default(),
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let warnings = t
            .apply(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for w in warnings {
            tracing::warn!(file = %path.display(), "{w}");
        }
        Ok(t)
    }

    pub fn is_on(&self) -> bool {
        self.path.is_some()
    }

    /// The tenant a token belongs to.
    pub fn who(&self, token: &str) -> Option<Who> {
        let table = Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()));
        let d = digest(token);
        let spec = table.by_digest.get(&d).or_else(|| {
            let id = *self
                .internal
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&d)?;
            table.by_id.get(&id)
        })?;
        Some(Who {
            id: spec.id,
            name: spec.name.clone(),
        })
    }

    /// A new token of tenant `id` for fctrace's own use (the functions it runs for the
    /// tenant send their spans with it); 128 random bits from the OS.
    pub fn internal_token(&self, id: Tenant) -> Result<String, String> {
        let mut bytes = [0u8; 16];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| format!("no random bytes for a token: {e}"))?;
        let token = format!("fctrace-{}", hex::encode(bytes));
        self.internal
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest(&token), id);
        Ok(token)
    }

    pub fn by_id(&self, id: Tenant) -> Option<Arc<TenantSpec>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.by_id.get(&id).cloned()
    }

    /// The id of tenant `name`; "" is the default tenant.
    pub fn id_by_name(&self, name: &str) -> Option<Tenant> {
        if name.is_empty() {
            return Some(crate::store::keys::DEFAULT_TENANT);
        }
        self.by_name(name).map(|t| t.id)
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<TenantSpec>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.by_name.get(name).cloned()
    }

    /// The stable id of tenant `name`, given one now if it has none.
    fn id_of(&self, name: &str) -> Result<Tenant, String> {
        let key = [ID_KEY, name.as_bytes()].concat();
        let read = |k: &[u8]| -> Result<Option<Tenant>, String> {
            Ok(self
                .store
                .state(k)
                .map_err(|e| e.to_string())?
                .and_then(|v| <[u8; 2]>::try_from(v.as_slice()).ok())
                .map(Tenant::from_le_bytes))
        };
        if let Some(id) = read(&key)? {
            return Ok(id);
        }
        let next = read(NEXT_KEY)?.unwrap_or(1);
        if next == Tenant::MAX {
            return Err("no tenant ids left".into());
        }
        self.store
            .set_state(NEXT_KEY, &(next + 1).to_le_bytes())
            .and_then(|_| self.store.set_state(&key, &next.to_le_bytes()))
            .map_err(|e| e.to_string())?;
        Ok(next)
    }

    /// Check `text` and make it the tenants in effect; returns warnings to log.
    pub fn apply(&self, text: &str) -> Result<Vec<String>, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if raw.tenants.len() > MAX_TENANTS {
            return Err(format!("at most {MAX_TENANTS} tenants"));
        }
        let mut table = Table::default();
        let mut warnings = Vec::new();
        for (i, t) in raw.tenants.into_iter().enumerate() {
            let err = |m: String| format!("tenants[{i}] ({}): {m}", t.name);
            if t.name.is_empty()
                || t.name.len() > 128
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(err("name: letters, digits, '-', '_' or '.'".into()));
            }
            if table.by_name.contains_key(&t.name) {
                return Err(err("name: declared twice".into()));
            }
            let mut digests = Vec::new();
            for h in t
                .token_sha256
                .clone()
                .map(OneOrMany::into_vec)
                .unwrap_or_default()
            {
                let bytes = hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| err("token_sha256: 64 hex digits".into()))?;
                digests.push(bytes);
            }
            let plain = t.token.clone().map(OneOrMany::into_vec).unwrap_or_default();
            if !plain.is_empty() {
                warnings.push(format!(
                    "tenant {:?} has a plain token in the file: store its token_sha256 instead",
                    t.name
                ));
            }
            for p in plain {
                if p.len() < MIN_TOKEN_LEN {
                    return Err(err(format!("token: at least {MIN_TOKEN_LEN} characters")));
                }
                digests.push(digest(&p));
            }
            if digests.is_empty() {
                return Err(err("a token_sha256 (or token) is required".into()));
            }
            let retention = t
                .retention
                .as_deref()
                .map(crate::duration::parse)
                .transpose()
                .map_err(|e| err(format!("retention: {e}")))?;
            if retention.is_some_and(|r| r.is_zero()) {
                return Err(err("retention: must be longer than 0".into()));
            }
            if t.max_stored_bytes == Some(0) {
                return Err(err("max_stored_bytes: must be greater than 0".into()));
            }
            if t.spans_per_second
                .is_some_and(|r| !(r > 0.0 && r.is_finite()))
            {
                return Err(err("spans_per_second: must be greater than 0".into()));
            }
            let spec = Arc::new(TenantSpec {
                id: self.id_of(&t.name).map_err(&err)?,
                name: t.name.clone(),
                spans_per_second: t.spans_per_second,
                retention,
                max_stored_bytes: t.max_stored_bytes,
            });
            for d in digests {
                if table.by_digest.insert(d, Arc::clone(&spec)).is_some() {
                    return Err(err("a token is given to two tenants".into()));
                }
            }
            table.by_id.insert(spec.id, Arc::clone(&spec));
            table.by_name.insert(t.name, spec);
        }
        let store_retention = self.store.retention();
        let mut retention = HashMap::new();
        for spec in table.by_id.values() {
            if let Some(r) = spec.retention {
                if r > store_retention {
                    warnings.push(format!(
                        "tenant {:?}: retention {r:?} is longer than the store's ({store_retention:?}); the store's applies",
                        spec.name
                    ));
                }
                retention.insert(spec.id, r);
            }
        }
        self.store.set_tenant_retention(retention);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(warnings)
    }

    /// Re-read the file whenever it changes; a bad file keeps the last good tenants.
    pub async fn watch(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let shown = path.display().to_string();
        let apply = |text: &str| match self.apply(text) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(file = %shown, "{w}");
                }
                tracing::info!(file = %shown, "tenants reloaded");
            }
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "tenants not reloaded; keeping the last good file")
            }
        };
        crate::reload::watch_file(path.clone(), apply, stop).await;
    }
}

/// The token a request carries: `Authorization: Bearer …` or `x-fctrace-token`.
pub fn token_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-fctrace-token").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &crate::store::StoreOptions::default()).unwrap();
        (dir, Arc::new(s))
    }

    #[test]
    fn tokens_find_their_tenant_and_ids_stay() {
        let (_dir, store) = store();
        let t = Tenancy::off(Arc::clone(&store));
        // sha256("alpha-token-0123456789")
        let alpha = hex::encode(digest("alpha-token-0123456789"));
        let file = format!(
            "[[tenants]]\nname = \"a\"\ntoken_sha256 = \"{alpha}\"\n\
             [[tenants]]\nname = \"b\"\ntoken = [\"bravo-token-0123456789\"]\nspans_per_second = 10\n"
        );
        let warnings = t.apply(&file).unwrap();
        assert_eq!(warnings.len(), 1, "the plain token is warned about");
        assert!(
            !warnings[0].contains("bravo-token"),
            "never the token itself"
        );
        let a = t.who("alpha-token-0123456789").unwrap();
        let b = t.who("bravo-token-0123456789").unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(t.who("alpha-token-012345678"), None);
        // reordered and reloaded: the same ids
        let swapped = format!(
            "[[tenants]]\nname = \"b\"\ntoken = \"bravo-token-0123456789\"\n\
             [[tenants]]\nname = \"c\"\ntoken = \"charlie-token-0123456789\"\n\
             [[tenants]]\nname = \"a\"\ntoken_sha256 = [\"{alpha}\"]\n"
        );
        t.apply(&swapped).unwrap();
        assert_eq!(t.who("bravo-token-0123456789").unwrap().id, 2);
        assert_eq!(t.who("alpha-token-0123456789").unwrap().id, 1);
        assert_eq!(t.who("charlie-token-0123456789").unwrap().id, 3);
    }

    #[test]
    fn bad_files_are_refused_whole() {
        let (_dir, store) = store();
        let t = Tenancy::off(store);
        for (file, why) in [
            ("[[tenants]]\nname = \"a\"\n", "required"),
            ("[[tenants]]\nname = \"a\"\ntoken = \"short\"\n", "at least 16"),
            ("[[tenants]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\n", "64 hex"),
            (
                "[[tenants]]\nname = \"a\"\ntoken = \"same-token-0123456789\"\n[[tenants]]\nname = \"b\"\ntoken = \"same-token-0123456789\"\n",
                "two tenants",
            ),
            ("[[tenants]]\nname = \"a b\"\ntoken = \"some-token-0123456789\"\n", "name"),
        ] {
            let e = t.apply(file).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
