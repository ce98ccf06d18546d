//! The inventory: which objects a sync applied, kept between syncs so the objects that left the
//! desired set can be found and pruned, and its compact text form stored in the cluster.
//!
//! # What an entry holds
//! The key is the object's identity ([`ObjectRef`]: group, kind, namespace, name). Prune also
//! needs the API version it was applied at, to find the resource to delete once the object is no
//! longer in the desired set (the group and kind alone cannot be resolved if the manifest is gone
//! and discovery serves several versions); the namespace tells the scope (none: cluster-scoped).
//! The digest prefix of what was applied lets the apply engine skip objects whose desired state
//! did not change since the last apply. The [`LiveStamp`] of what the apply left (the generation
//! and a 32-bit tag of the uid, or for kinds without a generation the resourceVersion) lets a
//! restarted engine prove, from one metadata list per kind, that nobody changed, deleted or
//! recreated the object since, and skip it as a running engine does. Entries written before the
//! stamp existed have none; they still parse and give no skip.
//!
//! # Storage format and its size
//! An object in etcd is limited to about 1.5 MiB, and the inventory shares its object with the
//! rest of the sync's status. Measured with 10,000 entries with realistic names (29-character
//! namespaces, 29-character names, ten common kinds):
//! - Flux-style lines `<namespace>_<name>_<group>_<kind> <version> <64-hex digest>`: 1,616,000
//!   bytes, over the limit on their own;
//! - the same lines with a 16-hex digest: 1,136,000 bytes, which fits but leaves little room;
//! - this format: 750,320 bytes (the test below bounds it at 800,000, and at 1 MiB once escaped
//!   as a JSON string).
//!
//! This format groups entries under one `[<apiVersion> <Kind>]` header per API version and kind,
//! so entry lines only carry `<namespace> <name> <digest> [<stamp>]` (`-` as namespace for
//! cluster scope; the stamp `<uid8>g<generation>` or `r<resourceVersion>`, about 11 bytes: the
//! same 10,000 entries with stamps take 859,142 bytes, still one 900,000-byte shard),
//! and truncates the digest to its first 16 hex digits (64 bits): it detects a change of one
//! object's desired state, where a 2^-64 accidental collision is negligible; it is not a security
//! boundary (whoever can write the source can change the objects anyway). No compression: it
//! would need a dependency and make the stored form unreadable.
//!
//! Larger inventories (beyond about 20,000 entries) can be split with [`Inventory::to_shards`]
//! into several objects, each parseable on its own. Names are escaped (`%XX` for `%`, `[`, `]`,
//! whitespace, control and non-ASCII bytes) because a few kinds (RBAC) allow nearly any character
//! in names.
//!
//! ```text
//! headway.dev/inventory v1
//! [v1 Namespace]
//! - prod 9b2c4e6f8a0d1c3e
//! [apps/v1 Deployment]
//! prod api 04d1e5f7a9b3c2d1 5e0c1a7fg3
//! prod web 3f1a9c0d5e7b2a64
//! [v1 ConfigMap]
//! prod settings 7a0e3c5d9b1f2e48 r48123456
//! ```
//!
//! long because the entry, its text encoding, its parser with line-numbered errors and the
//! sharding are one format, and their round-trip tests (40% of the file) belong beside it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::order::sort_for_delete;
use crate::{Digest, Manifest, ObjectRef};

/// First line of the encoded form.
pub const HEADER: &str = "headway.dev/inventory v1";

/// The first 64 bits of a sha256 [`Digest`], displayed as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct DigestPrefix(u64);

impl DigestPrefix {
    /// The prefix of a full digest.
    pub fn of(digest: &Digest) -> Self {
        let hex = digest.to_hex();
        DigestPrefix(u64::from_str_radix(&hex[..16], 16).expect("digest hex is valid"))
    }

    /// Whether `digest` starts with this prefix.
    pub fn matches(&self, digest: &Digest) -> bool {
        *self == DigestPrefix::of(digest)
    }
}

impl fmt::Display for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for DigestPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 16
            || !s
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!(
                "invalid digest prefix {s:?}: expected 16 lowercase hex digits"
            ));
        }
        u64::from_str_radix(s, 16)
            .map(DigestPrefix)
            .map_err(|e| e.to_string())
    }
}

impl From<DigestPrefix> for String {
    fn from(d: DigestPrefix) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for DigestPrefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What the inventory remembers about one applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The API version it was applied at, e.g. `apps/v1`.
    pub api_version: String,
    /// Prefix of the digest of the applied (normalised) object.
    pub digest: DigestPrefix,
    /// What the server returned after the apply, when known (entries written before this field
    /// existed have none, and give no skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveStamp>,
}

/// The live object an apply left: enough to tell later that nobody changed, deleted or
/// recreated it.
///
/// For kinds with a generation, the generation (spec changes bump it, status writes do not) and a
/// 32-bit tag of the uid (a recreated object starts again at generation 1). For kinds without
/// one, the resourceVersion alone: any write bumps it, and it is the store's revision of the last
/// write, so a recreated object never has the old one (no uid needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LiveStamp {
    /// `metadata.generation`, with the first 32 bits of the sha256 of the uid
    /// ([`LiveStamp::uid_tag`]).
    Generation { uid: u32, generation: u64 },
    /// `metadata.resourceVersion`, when it is a decimal number (as it is with etcd).
    ResourceVersion(u64),
}

impl LiveStamp {
    /// The stamp of a live object from its uid, generation (0 or none: the kind has none) and
    /// resourceVersion; `None` when the resourceVersion is needed and is not a number.
    pub fn new(uid: &str, generation: Option<i64>, resource_version: &str) -> Option<Self> {
        Some(match generation.filter(|g| *g > 0) {
            Some(g) => LiveStamp::Generation {
                uid: Self::uid_tag(uid),
                generation: g as u64,
            },
            None => LiveStamp::ResourceVersion(resource_version.parse().ok()?),
        })
    }

    /// The 32-bit tag of a uid stored in a stamp.
    pub fn uid_tag(uid: &str) -> u32 {
        let hex = Digest::of_bytes(uid.as_bytes()).to_hex();
        u32::from_str_radix(&hex[..8], 16).expect("digest hex is valid")
    }

    /// Whether a live object with this uid, generation and resourceVersion is the one stamped.
    pub fn matches(&self, uid: &str, generation: Option<i64>, resource_version: &str) -> bool {
        match *self {
            LiveStamp::Generation {
                uid: tag,
                generation: g,
            } => generation == Some(g as i64) && Self::uid_tag(uid) == tag,
            LiveStamp::ResourceVersion(rv) => resource_version.parse::<u64>() == Ok(rv),
        }
    }
}

impl fmt::Display for LiveStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveStamp::Generation { uid, generation } => write!(f, "{uid:08x}g{generation}"),
            LiveStamp::ResourceVersion(rv) => write!(f, "r{rv}"),
        }
    }
}

impl std::str::FromStr for LiveStamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid live stamp {s:?}: expected r and a resourceVersion, or 8 lowercase hex digits, g and a generation"
            )
        };
        let number = |n: &str| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            n.parse::<u64>().map_err(|_| invalid())
        };
        if let Some(rv) = s.strip_prefix('r') {
            return Ok(LiveStamp::ResourceVersion(number(rv)?));
        }
        let (uid, rest) = s.split_at_checked(8).ok_or_else(invalid)?;
        if !uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(invalid());
        }
        let uid = u32::from_str_radix(uid, 16).map_err(|_| invalid())?;
        let generation = number(rest.strip_prefix('g').ok_or_else(invalid)?)?;
        Ok(LiveStamp::Generation { uid, generation })
    }
}

/// The objects applied by one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub entries: BTreeMap<ObjectRef, InventoryEntry>,
}

/// Why an encoded inventory could not be read. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory does not start with {HEADER:?} (found {0:?})")]
    Header(String),
    #[error("inventory line {line}: entry before any [apiVersion Kind] section")]
    NoSection { line: usize },
    #[error("inventory line {line}: malformed section header {text:?}: expected [apiVersion Kind]")]
    Section { line: usize, text: String },
    #[error(
        "inventory line {line}: malformed entry {text:?}: expected `namespace name digest [stamp]`"
    )]
    Entry { line: usize, text: String },
    #[error("inventory line {line}: {message}")]
    Field { line: usize, message: String },
    #[error("inventory line {line}: duplicate entry for {id}")]
    Duplicate { line: usize, id: ObjectRef },
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The inventory of a set of manifests (as they are applied).
    pub fn from_manifests<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Self {
        let entries = manifests
            .into_iter()
            .map(|m| {
                let entry = InventoryEntry {
                    api_version: m.api_version.clone(),
                    digest: DigestPrefix::of(&m.digest),
                    live: None,
                };
                (m.id.clone(), entry)
            })
            .collect();
        Inventory { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &ObjectRef) -> bool {
        self.entries.contains_key(id)
    }

    /// Records one applied object.
    pub fn insert(&mut self, id: ObjectRef, entry: InventoryEntry) {
        self.entries.insert(id, entry);
    }

    /// The objects of `self` (the previous inventory) that `current` no longer has: the ones to
    /// prune, in deletion order (reverse apply order).
    pub fn stale(&self, current: &Inventory) -> Vec<(ObjectRef, InventoryEntry)> {
        let mut ids: Vec<ObjectRef> = self
            .entries
            .keys()
            .filter(|id| !current.contains(id))
            .cloned()
            .collect();
        sort_for_delete(&mut ids);
        ids.into_iter()
            .map(|id| {
                let entry = self.entries[&id].clone();
                (id, entry)
            })
            .collect()
    }

    /// The compact text form (see the module documentation).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 + self.entries.len() * 64);
        out.push_str(HEADER);
        out.push('\n');
        let mut section: Option<(&str, &str)> = None;
        for (id, entry) in &self.entries {
            let this = (entry.api_version.as_str(), id.kind.as_str());
            if section != Some(this) {
                out.push_str(&section_line(this.0, this.1));
                section = Some(this);
            }
            out.push_str(&entry_line(id, entry));
        }
        out
    }

    /// The text form split into shards of at most `max_bytes` each (each with the header and
    /// the section headers it needs, so each shard parses on its own). Always at least one
    /// shard. A single entry longer than `max_bytes` gets a shard of its own.
    pub fn to_shards(&self, max_bytes: usize) -> Vec<String> {
        let mut shards = Vec::new();
        let mut shard = format!("{HEADER}\n");
        let mut section: Option<(&str, &str)> = None;
        for (id, entry) in &self.entries {
            let this = (entry.api_version.as_str(), id.kind.as_str());
            let header = section_line(this.0, this.1);
            let line = entry_line(id, entry);
            let needs_header = section != Some(this);
            let extra = line.len() + if needs_header { header.len() } else { 0 };
            if shard.len() + extra > max_bytes && shard.len() > HEADER.len() + 1 {
                shards.push(std::mem::replace(&mut shard, format!("{HEADER}\n")));
                shard.push_str(&header);
            } else if needs_header {
                shard.push_str(&header);
            }
            section = Some(this);
            shard.push_str(&line);
        }
        shards.push(shard);
        shards
    }

    /// Reads the text form produced by [`Inventory::encode`].
    pub fn parse(text: &str) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::new();
        inv.parse_into(text)?;
        Ok(inv)
    }

    /// Reads shards produced by [`Inventory::to_shards`] (in any order) into one inventory.
    pub fn parse_shards<'a>(
        shards: impl IntoIterator<Item = &'a str>,
    ) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::new();
        for shard in shards {
            inv.parse_into(shard)?;
        }
        Ok(inv)
    }

    fn parse_into(&mut self, text: &str) -> Result<(), InventoryError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first == HEADER => {}
            other => {
                return Err(InventoryError::Header(
                    other.map_or("", |(_, l)| l).to_string(),
                ));
            }
        }
        let mut section: Option<(String, String)> = None;
        for (line, text) in lines {
            if text.is_empty() {
                continue;
            }
            if let Some(inner) = text.strip_prefix('[') {
                let malformed = || InventoryError::Section {
                    line,
                    text: text.to_string(),
                };
                let inner = inner.strip_suffix(']').ok_or_else(malformed)?;
                let (api_version, kind) = inner.split_once(' ').ok_or_else(malformed)?;
                if api_version.is_empty() || kind.is_empty() || kind.contains(' ') {
                    return Err(malformed());
                }
                let kind =
                    unescape(kind).map_err(|message| InventoryError::Field { line, message })?;
                section = Some((api_version.to_string(), kind));
                continue;
            }
            let (api_version, kind) = section.as_ref().ok_or(InventoryError::NoSection { line })?;
            let fields: Vec<&str> = text.split(' ').collect();
            let (namespace, name, digest, live) = match fields[..] {
                [namespace, name, digest] => (namespace, name, digest, None),
                [namespace, name, digest, live] => (namespace, name, digest, Some(live)),
                _ => {
                    return Err(InventoryError::Entry {
                        line,
                        text: text.to_string(),
                    });
                }
            };
            let field_err = |message: String| InventoryError::Field { line, message };
            let digest: DigestPrefix = digest.parse().map_err(field_err)?;
            let live = live
                .map(str::parse::<LiveStamp>)
                .transpose()
                .map_err(field_err)?;
            let name = unescape(name).map_err(field_err)?;
            let namespace = match namespace {
                "-" => None,
                ns => Some(unescape(ns).map_err(field_err)?),
            };
            if name.is_empty() || namespace.as_ref().is_some_and(String::is_empty) {
                return Err(InventoryError::Entry {
                    line,
                    text: text.to_string(),
                });
            }
            let id = ObjectRef::new(api_version, kind.clone(), namespace, name);
            let entry = InventoryEntry {
                api_version: api_version.clone(),
                digest,
                live,
            };
            if self.entries.insert(id.clone(), entry).is_some() {
                return Err(InventoryError::Duplicate { line, id });
            }
        }
        Ok(())
    }
}

fn section_line(api_version: &str, kind: &str) -> String {
    format!("[{api_version} {}]\n", escape(kind))
}

fn entry_line(id: &ObjectRef, entry: &InventoryEntry) -> String {
    let mut s = String::with_capacity(64);
    match &id.namespace {
        Some(ns) => s.push_str(&escape(ns)),
        None => s.push('-'),
    }
    let _ = write!(s, " {} {}", escape(&id.name), entry.digest);
    if let Some(live) = &entry.live {
        let _ = write!(s, " {live}");
    }
    s.push('\n');
    s
}

/// `%XX`-escapes `%`, whitespace, control characters and `[`/`]` so a field never contains a
/// separator. Names of almost every kind need no escaping.
fn escape(s: &str) -> String {
    if !s.bytes().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if needs_escape(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b as char);
        }
    }
    // Non-ASCII bytes are escaped, so `out` is ASCII.
    out
}

fn needs_escape(b: u8) -> bool {
    !(b.is_ascii_graphic()) || b == b'%' || b == b'[' || b == b']'
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("truncated escape in {s:?}"))?;
            let b = u8::from_str_radix(hex, 16)
                .map_err(|_| format!("invalid escape %{hex} in {s:?}"))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("escaped name {s:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef::new(api_version, kind, ns.map(str::to_string), name)
    }

    fn entry(api_version: &str, seed: &str) -> InventoryEntry {
        InventoryEntry {
            api_version: api_version.into(),
            digest: DigestPrefix::of(&Digest::of_bytes(seed.as_bytes())),
            live: None,
        }
    }

    fn inventory(items: &[(&str, &str, Option<&str>, &str)]) -> Inventory {
        let mut inv = Inventory::new();
        for (api, kind, ns, name) in items {
            inv.insert(id(api, kind, *ns, name), entry(api, name));
        }
        inv
    }

    /// Parses `input`; checks the error message, or that it round-trips to `expected` text.
    fn check(input: &str, expected: Result<&str, &str>) {
        match (Inventory::parse(input), expected) {
            (Ok(inv), Ok(text)) => {
                assert_eq!(inv.encode(), text, "{input:?}");
                assert_eq!(Inventory::parse(&inv.encode()).unwrap(), inv);
            }
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg, "{input:?}"),
            (got, want) => panic!("{input:?}: got {got:?}, wanted {want:?}"),
        }
    }

    const D1: &str = "0123456789abcdef";
    const D2: &str = "fedcba9876543210";

    #[test]
    fn parse_table() {
        let canonical = format!(
            "{HEADER}\n[v1 Namespace]\n- prod {D1}\n[apps/v1 Deployment]\nprod web {D2}\nprod api {D1}\n"
        );
        // Sections come out in identity order (group, kind, namespace, name).
        let expected = format!(
            "{HEADER}\n[v1 Namespace]\n- prod {D1}\n[apps/v1 Deployment]\nprod api {D1}\nprod web {D2}\n"
        );
        check(&canonical, Ok(&expected));
        check(&format!("{HEADER}\n"), Ok(&format!("{HEADER}\n")));
        check(
            &format!("{HEADER}\n\n[v1 ConfigMap]\n\nns c {D1}\n"),
            Ok(&format!("{HEADER}\n[v1 ConfigMap]\nns c {D1}\n")),
        );
        // Escaped names round-trip.
        check(
            &format!(
                "{HEADER}\n[rbac.authorization.k8s.io/v1 ClusterRole]\n- odd%20name%25 {D1}\n"
            ),
            Ok(&format!(
                "{HEADER}\n[rbac.authorization.k8s.io/v1 ClusterRole]\n- odd%20name%25 {D1}\n"
            )),
        );
        check(
            "",
            Err(r#"inventory does not start with "headway.dev/inventory v1" (found "")"#),
        );
        check(
            "headway.dev/inventory v2\n",
            Err(
                r#"inventory does not start with "headway.dev/inventory v1" (found "headway.dev/inventory v2")"#,
            ),
        );
        check(
            &format!("{HEADER}\nns c {D1}\n"),
            Err("inventory line 2: entry before any [apiVersion Kind] section"),
        );
        check(
            &format!("{HEADER}\n[v1]\n"),
            Err(r#"inventory line 2: malformed section header "[v1]": expected [apiVersion Kind]"#),
        );
        check(
            &format!("{HEADER}\n[v1 ConfigMap\n"),
            Err(
                r#"inventory line 2: malformed section header "[v1 ConfigMap": expected [apiVersion Kind]"#,
            ),
        );
        check(
            &format!("{HEADER}\n[v1 ConfigMap]\nns c\n"),
            Err(
                r#"inventory line 3: malformed entry "ns c": expected `namespace name digest [stamp]`"#,
            ),
        );
        check(
            &format!("{HEADER}\n[v1 ConfigMap]\nns c xyz\n"),
            Err(
                r#"inventory line 3: invalid digest prefix "xyz": expected 16 lowercase hex digits"#,
            ),
        );
        check(
            &format!("{HEADER}\n[v1 ConfigMap]\nns c%2 {D1}\n"),
            Err(r#"inventory line 3: truncated escape in "c%2""#),
        );
        check(
            &format!("{HEADER}\n[v1 ConfigMap]\nns c {D1}\n[v1 ConfigMap]\nns c {D2}\n"),
            Err("inventory line 5: duplicate entry for ConfigMap/ns/c"),
        );
    }

    #[test]
    fn live_stamps_round_trip_and_old_entries_parse() {
        let uid = "6f1c2d3e-0000-4abc-8def-0123456789ab";
        let tag = format!("{:08x}", LiveStamp::uid_tag(uid));
        assert_eq!(tag, &Digest::of_bytes(uid.as_bytes()).to_hex()[..8]);
        let deployment = LiveStamp::new(uid, Some(3), "123456").unwrap();
        assert_eq!(
            deployment,
            LiveStamp::Generation {
                uid: LiveStamp::uid_tag(uid),
                generation: 3
            }
        );
        assert_eq!(deployment.to_string(), format!("{tag}g3"));
        // Generation 0 or none: the kind has none, the resourceVersion is kept.
        let configmap = LiveStamp::new(uid, Some(0), "48123456").unwrap();
        assert_eq!(configmap, LiveStamp::ResourceVersion(48_123_456));
        assert_eq!(configmap.to_string(), "r48123456");
        assert_eq!(LiveStamp::new(uid, None, "48123456"), Some(configmap));
        assert_eq!(LiveStamp::new(uid, None, "not-a-number"), None);

        assert!(deployment.matches(uid, Some(3), "999"));
        assert!(!deployment.matches(uid, Some(4), "123456"));
        assert!(!deployment.matches("another-uid", Some(3), "123456"));
        assert!(configmap.matches(uid, None, "48123456"));
        assert!(!configmap.matches(uid, None, "48123457"));
        // A recreated object always has a new resourceVersion: no uid needed.
        assert!(configmap.matches("another-uid", None, "48123456"));

        // New entries: a fourth field; old ones (three fields) still parse, with no stamp.
        let text = format!(
            "{HEADER}\n[v1 ConfigMap]\nns a {D1} r48123456\nns b {D2}\n[apps/v1 Deployment]\nns web {D1} {tag}g3\n"
        );
        let inv = Inventory::parse(&text).unwrap();
        let get = |kind: &str, name: &str| {
            let group = if kind == "Deployment" {
                "apps/v1"
            } else {
                "v1"
            };
            inv.entries[&id(group, kind, Some("ns"), name)].clone()
        };
        assert_eq!(get("ConfigMap", "a").live, Some(configmap));
        assert_eq!(get("ConfigMap", "b").live, None);
        assert_eq!(get("ConfigMap", "b").digest.to_string(), D2);
        assert_eq!(get("Deployment", "web").live, Some(deployment));
        assert_eq!(inv.encode(), text);
        assert_eq!(inv.to_shards(1_000).concat(), text);

        // A stamp adds 10 bytes to an entry with an 8-digit resourceVersion.
        let mut one = Inventory::new();
        let mut e = entry("v1", "a");
        one.insert(id("v1", "ConfigMap", Some("ns"), "a"), e.clone());
        let plain = one.encode().len();
        e.live = Some(configmap);
        one.insert(id("v1", "ConfigMap", Some("ns"), "a"), e);
        assert_eq!(one.encode().len() - plain, 10);

        for (stamp, message) in [
            ("xyz", r#"invalid live stamp "xyz""#),
            ("r", r#"invalid live stamp "r""#),
            ("r12a", r#"invalid live stamp "r12a""#),
            ("0123456g", r#"invalid live stamp "0123456g""#),
            ("0123456Ag1", r#"invalid live stamp "0123456Ag1""#),
            ("01234567x1", r#"invalid live stamp "01234567x1""#),
            ("01234567g", r#"invalid live stamp "01234567g""#),
            ("01234567r-1", r#"invalid live stamp "01234567r-1""#),
            (
                "01234567g99999999999999999999",
                r#"invalid live stamp "01234567g99999999999999999999""#,
            ),
        ] {
            let err = Inventory::parse(&format!("{HEADER}\n[v1 ConfigMap]\nns c {D1} {stamp}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("inventory line 3: {message}: expected")),
                "{stamp}: {err}"
            );
        }
        check(
            &format!("{HEADER}\n[v1 ConfigMap]\nns c {D1} 01234567g1 extra\n"),
            Err(&format!(
                r#"inventory line 3: malformed entry "ns c {D1} 01234567g1 extra": expected `namespace name digest [stamp]`"#
            )),
        );
    }

    #[test]
    fn stale_objects_in_delete_order() {
        let previous = inventory(&[
            ("v1", "Namespace", None, "old"),
            ("v1", "ConfigMap", Some("old"), "cfg"),
            ("apps/v1", "Deployment", Some("old"), "web"),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                None,
                "hook",
            ),
            ("v1", "ConfigMap", Some("prod"), "kept"),
        ]);
        let current = inventory(&[
            ("v1", "ConfigMap", Some("prod"), "kept"),
            ("v1", "Secret", Some("prod"), "new"),
        ]);
        let stale: Vec<String> = previous
            .stale(&current)
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(
            stale,
            [
                "ValidatingWebhookConfiguration.admissionregistration.k8s.io/hook",
                "Deployment.apps/old/web",
                "ConfigMap/old/cfg",
                "Namespace/old",
            ]
        );
        assert!(current.stale(&current).is_empty());
        let (_, e) = &previous.stale(&current)[1];
        assert_eq!(e.api_version, "apps/v1");
    }

    #[test]
    fn from_manifests_keeps_version_and_digest_prefix() {
        let m = Manifest::from_object(
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "web", "namespace": "prod"}}),
            crate::SourceLocation {
                file: "a.yaml".into(),
                document: 0,
                line: None,
            },
        )
        .unwrap();
        let inv = Inventory::from_manifests([&m]);
        let e = &inv.entries[&m.id];
        assert_eq!(e.api_version, "apps/v1");
        assert!(e.digest.matches(&m.digest));
        assert_eq!(e.digest.to_string(), m.digest.to_hex()[..16]);
    }

    /// 10,000 entries with realistic names: ten common kinds, 30-character namespaces and names.
    fn big(n: usize, stamped: bool) -> Inventory {
        let kinds = [
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
            ("v1", "ConfigMap"),
            ("v1", "ServiceAccount"),
            ("networking.k8s.io/v1", "Ingress"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("policy/v1", "PodDisruptionBudget"),
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
        ];
        let mut inv = Inventory::new();
        for i in 0..n {
            let (api, kind) = kinds[i % kinds.len()];
            let ns = format!("team-{:02}-payments-production", i % 40);
            let name = format!("checkout-service-{:05}-worker", i / 10);
            let mut e = entry(api, &format!("{i}"));
            if stamped {
                // Kinds with a generation (a few updates), the others (Service, ConfigMap,
                // ServiceAccount, RoleBinding) with an 8-digit resourceVersion, as on a cluster
                // that has seen tens of millions of writes.
                let without = ["Service", "ConfigMap", "ServiceAccount", "RoleBinding"];
                let generation = (!without.contains(&kind)).then_some(1 + (i % 17) as i64);
                let uid = format!("3f1a9c0d-5e7b-4a64-9b2c-{i:012}");
                e.live = LiveStamp::new(&uid, generation, &format!("{}", 48_000_000 + i * 7));
                assert!(e.live.is_some());
            }
            inv.insert(id(api, kind, Some(&ns), &name), e);
        }
        inv
    }

    #[test]
    fn ten_thousand_entries_fit_in_one_object() {
        let inv = big(10_000, false);
        let text = inv.encode();
        assert!(
            text.len() < 800_000,
            "10,000 entries take {} bytes",
            text.len()
        );
        // Even as an escaped JSON string inside a status object, well below etcd's 1.5 MiB.
        assert!(serde_json::to_string(&text).unwrap().len() < 1024 * 1024);
        assert_eq!(Inventory::parse(&text).unwrap(), inv);

        // With the live stamps (about 11 bytes each), still one shard of the apply engine's
        // store (900,000 bytes of text, below the API server's 1 MiB ConfigMap limit).
        let stamped = big(10_000, true);
        let text = stamped.encode();
        assert!(
            text.len() < 870_000,
            "10,000 stamped entries take {} bytes",
            text.len()
        );
        assert_eq!(stamped.to_shards(900_000).len(), 1);
        assert_eq!(Inventory::parse(&text).unwrap(), stamped);
    }

    #[test]
    fn shards_round_trip() {
        let inv = big(25_000, true);
        let shards = inv.to_shards(256 * 1024);
        assert!(shards.len() > 5, "{} shards", shards.len());
        for s in &shards {
            assert!(s.len() <= 256 * 1024);
            Inventory::parse(s).unwrap();
        }
        assert_eq!(
            Inventory::parse_shards(shards.iter().rev().map(String::as_str)).unwrap(),
            inv
        );
        assert_eq!(Inventory::new().to_shards(10), vec![format!("{HEADER}\n")]);
        assert_eq!(
            inventory(&[("v1", "ConfigMap", Some("a"), "b")])
                .to_shards(1_000)
                .len(),
            1
        );
    }
}
