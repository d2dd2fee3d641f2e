//! Which store node serves which partition: leases in a JetStream key-value bucket
//! (`FCTRACE_LEASES`, as many replicas as the stream). The bucket's entries live for
//! [`LEASE_TTL`] unless rewritten, so a node's heartbeat is what keeps its entries:
//!
//! - `members.<node>`: a live store node, where query nodes reach it, and the
//!   partitions it has caught up on (rewritten every [`HEARTBEAT`]);
//! - `partitions.<p>`: the lease of partition `p`, naming the node that serves it.
//!   It is created only when absent and renewed only at the revision its holder last
//!   wrote (compare-and-set), so two nodes never both hold it.
//!
//! Each partition has one wanted owner among the live members (rendezvous hashing:
//! every node computes the same, and a node joining or leaving moves only its own
//! share). The wanted owner consumes the partition; it claims the lease once it has
//! caught up, and a holder that is no longer wanted gives the lease up only when the
//! wanted owner says it has caught up, so a partition is never served from a store
//! still replaying it. A node that dies stops renewing; its leases lapse after
//! [`LEASE_TTL`] and the new wanted owners take them over. [`plan`] is that decision
//! as a pure function; `server::cluster` carries it out. This module does not consume
//! the log or answer queries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::LogError;

pub const BUCKET: &str = "FCTRACE_LEASES";
/// How long an entry lives without its heartbeat: a dead node's partitions wait this
/// long (and their replay) before they are served again.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often a store node rewrites its entries and reconsiders its partitions.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

const MEMBER_PREFIX: &str = "members.";
const LEASE_PREFIX: &str = "partitions.";

/// A live store node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    /// Its internal API (`server::internal_api`), as query nodes reach it.
    pub addr: String,
    /// The partitions it consumes and has caught up on.
    #[serde(default)]
    pub ready: BTreeSet<u32>,
}

/// Who serves a partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub node: String,
    pub addr: String,
}

/// The cluster's ownership as one read of the bucket saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionMap {
    pub members: BTreeMap<String, Member>,
    /// By partition: its lease and the lease's revision, if it has one.
    pub leases: Vec<Option<(Lease, u64)>>,
}

impl PartitionMap {
    /// The lease of `partition`, if held.
    pub fn owner(&self, partition: u32) -> Option<&Lease> {
        self.leases
            .get(partition as usize)
            .and_then(|l| l.as_ref())
            .map(|(l, _)| l)
    }
}

/// The live member that should own `partition` (highest hash of node and partition).
pub fn wanted<'a>(partition: u32, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|node| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(node.as_bytes());
        h.update(&partition.to_le_bytes());
        (h.digest(), *node)
    })
}

/// What a store node does after a heartbeat.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Partitions to consume (owned, or wanted and catching up).
    pub consume: BTreeSet<u32>,
    /// Leases to create.
    pub claim: Vec<u32>,
    /// Leases to renew, at their revision.
    pub renew: Vec<(u32, u64)>,
    /// Leases to give up (their wanted owner has caught up), at their revision.
    pub release: Vec<(u32, u64)>,
}

/// What node `me` does, given the bucket as read (`map`, which includes `me` among its
/// members after its heartbeat) and the partitions `me` has caught up on.
pub fn plan(me: &str, map: &PartitionMap, caught_up: &BTreeSet<u32>) -> Plan {
    let mut p = Plan::default();
    let live = || map.members.keys().map(String::as_str);
    for (partition, lease) in map.leases.iter().enumerate() {
        let partition = partition as u32;
        let want = wanted(partition, live()) == Some(me);
        match lease {
            Some((l, rev)) if l.node == me => {
                let successor = wanted(partition, live()).and_then(|n| map.members.get(n));
                if !want && successor.is_some_and(|s| s.ready.contains(&partition)) {
                    p.release.push((partition, *rev));
                } else {
                    p.renew.push((partition, *rev));
                    p.consume.insert(partition);
                }
            }
            Some(_) => {
                if want {
                    p.consume.insert(partition);
                }
            }
            None => {
                if want {
                    p.consume.insert(partition);
                    if caught_up.contains(&partition) {
                        p.claim.push(partition);
                    }
                }
            }
        }
    }
    p
}

/// The bucket.
pub struct Leases {
    kv: kv::Store,
    partitions: u32,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl Leases {
    /// Open the bucket, creating it the first time.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        partitions: u32,
    ) -> Result<Leases, LogError> {
        // The bucket's stream made by hand, as a bucket is laid out: async-nats' own
        // bucket creation first reads the account's limits in a shape the packaged
        // nats-server (2.9) does not answer in.
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{BUCKET}"),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: LEASE_TTL,
            duplicate_window: LEASE_TTL,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        let kv = js.get_key_value(BUCKET).await.map_err(unavailable)?;
        Ok(Leases { kv, partitions })
    }

    /// Write `me`'s membership (its heartbeat).
    pub async fn heartbeat(&self, me: &Member) -> Result<(), LogError> {
        let value = serde_json::to_vec(me).map_err(unavailable)?;
        self.kv
            .put(format!("{MEMBER_PREFIX}{}", me.node), value.into())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The bucket as it is now (entries that do not parse are skipped with a warning).
    pub async fn read(&self) -> Result<PartitionMap, LogError> {
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut map = PartitionMap {
            members: BTreeMap::new(),
            leases: vec![None; self.partitions as usize],
        };
        for key in keys {
            let Some(entry) = self.kv.entry(key.clone()).await.map_err(unavailable)? else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if let Some(node) = key.strip_prefix(MEMBER_PREFIX) {
                match serde_json::from_slice::<Member>(&entry.value) {
                    Ok(m) => {
                        map.members.insert(node.to_owned(), m);
                    }
                    Err(e) => tracing::warn!(key, error = %e, "a member entry does not parse"),
                }
            } else if let Some(p) = key.strip_prefix(LEASE_PREFIX) {
                let slot = p.parse::<usize>().ok().and_then(|p| map.leases.get_mut(p));
                match (slot, serde_json::from_slice::<Lease>(&entry.value)) {
                    (Some(slot), Ok(l)) => *slot = Some((l, entry.revision)),
                    _ => tracing::warn!(key, "a lease entry does not parse"),
                }
            }
        }
        Ok(map)
    }

    /// Create the lease of `partition`; `None` when another node has it.
    pub async fn claim(&self, partition: u32, lease: &Lease) -> Result<Option<u64>, LogError> {
        let value = serde_json::to_vec(lease).map_err(unavailable)?;
        match self
            .kv
            .create(format!("{LEASE_PREFIX}{partition}"), value.into())
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Renew the lease of `partition` written at `revision`; `None` when it is no
    /// longer this node's (it lapsed and was taken).
    pub async fn renew(
        &self,
        partition: u32,
        lease: &Lease,
        revision: u64,
    ) -> Result<Option<u64>, LogError> {
        let value = serde_json::to_vec(lease).map_err(unavailable)?;
        match self
            .kv
            .update(format!("{LEASE_PREFIX}{partition}"), value.into(), revision)
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Give up the lease of `partition` written at `revision`.
    pub async fn release(&self, partition: u32, revision: u64) -> Result<(), LogError> {
        self.kv
            .delete_expect_revision(format!("{LEASE_PREFIX}{partition}"), Some(revision))
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, ready: &[u32]) -> (String, Member) {
        (
            node.to_owned(),
            Member {
                node: node.to_owned(),
                addr: format!("{node}:1"),
                ready: ready.iter().copied().collect(),
            },
        )
    }

    fn lease(node: &str, rev: u64) -> Option<(Lease, u64)> {
        Some((
            Lease {
                node: node.to_owned(),
                addr: format!("{node}:1"),
            },
            rev,
        ))
    }

    fn map(members: &[(&str, &[u32])], leases: Vec<Option<(Lease, u64)>>) -> PartitionMap {
        PartitionMap {
            members: members.iter().map(|(n, r)| member(n, r)).collect(),
            leases,
        }
    }

    #[test]
    fn every_node_agrees_on_the_wanted_owner_and_a_leaver_moves_only_its_share() {
        let three = ["a", "b", "c"];
        let mut share = BTreeMap::<&str, u32>::new();
        for p in 0..48 {
            let w = wanted(p, three).unwrap();
            // the same whatever order the members are listed in
            assert_eq!(wanted(p, ["c", "a", "b"]), Some(w));
            *share.entry(w).or_default() += 1;
            let two = wanted(p, ["a", "b"]).unwrap();
            if w != "c" {
                assert_eq!(two, w, "partition {p} moved though its owner stayed");
            }
        }
        assert!(share.values().all(|&n| (8..=24).contains(&n)), "{share:?}");
        assert_eq!(wanted(0, []), None);
    }

    #[test]
    fn a_lone_node_consumes_everything_and_claims_what_it_caught_up_on() {
        let m = map(&[("a", &[])], vec![None, None, lease("a", 7)]);
        let p = plan("a", &m, &BTreeSet::from([1]));
        assert_eq!(p.consume, BTreeSet::from([0, 1, 2]));
        assert_eq!(p.claim, vec![1]);
        assert_eq!(p.renew, vec![(2, 7)]);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_holder_gives_up_a_partition_only_once_its_wanted_owner_caught_up() {
        // find a partition that b wants over a
        let p = (0..64)
            .find(|&p| wanted(p, ["a", "b"]) == Some("b"))
            .unwrap();
        let mut leases = vec![None; p as usize + 1];
        leases[p as usize] = lease("a", 3);
        // b is catching up: a keeps serving, b consumes
        let warming = map(&[("a", &[]), ("b", &[])], leases.clone());
        let pa = plan("a", &warming, &BTreeSet::new());
        assert_eq!(pa.renew, vec![(p, 3)]);
        assert!(pa.consume.contains(&p));
        let pb = plan("b", &warming, &BTreeSet::from([p]));
        assert!(pb.consume.contains(&p) && pb.claim.is_empty());
        // b has caught up: a lets go, and b claims once the lease is gone
        let ready = map(&[("a", &[]), ("b", &[p])], leases);
        let pa = plan("a", &ready, &BTreeSet::new());
        assert_eq!(pa.release, vec![(p, 3)]);
        assert!(!pa.consume.contains(&p));
        let mut gone = ready.clone();
        gone.leases[p as usize] = None;
        assert!(plan("b", &gone, &BTreeSet::from([p])).claim.contains(&p));
        // a node that lost its lease to another does not renew it
        let mut taken = ready;
        taken.leases[p as usize] = lease("b", 9);
        assert!(plan("a", &taken, &BTreeSet::new()).renew.is_empty());
    }
}
