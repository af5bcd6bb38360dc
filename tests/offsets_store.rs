//! The consumer-offsets store on three in-process brokers (`partlog::cluster`), one
//! offsets partition: commits become visible once committed, loading and role errors,
//! failover to a new leader that loads exactly what was acknowledged, group deletion,
//! expiry, transactional commits, and record types the store does not model.

mod common;

use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::offsets::{codec, offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::record::BatchBuilder;
use partlog::replica::Acks;
use partlog::{Clock, Error, LogConfig};

const GROUP: &str = "billing";
const DAY: i64 = 24 * 60 * 60 * 1000;

fn cluster() -> (Cluster, Vec<OffsetsStore>) {
    cluster_of(cluster_config())
}

fn cluster_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_bytes_max: 1024,
        ..offsets_log_config()
    }
}

fn cluster_of(log_config: LogConfig) -> (Cluster, Vec<OffsetsStore>) {
    cluster_with(log_config, Acks::All)
}

fn cluster_with(log_config: LogConfig, acks: Acks) -> (Cluster, Vec<OffsetsStore>) {
    let c = Cluster::new(ClusterOptions {
        log_config,
        ..ClusterOptions::default()
    })
    .unwrap();
    let stores = (0..3)
        .map(|b| {
            let store = OffsetsStore::new(
                OffsetsConfig {
                    partitions: 1,
                    load_buffer_bytes: 512,
                    acks,
                    ..OffsetsConfig::default()
                },
                c.clock().clone(),
            );
            store.host(0, c.replica(b).unwrap().clone());
            store
        })
        .collect::<Vec<_>>();
    stores[0].become_leader(0).unwrap();
    stores[0].load(0).unwrap();
    (c, stores)
}

fn commit_of(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 1,
        metadata: String::new(),
    }
}

fn settle(c: &mut Cluster) {
    for _ in 0..3 {
        c.replicate().unwrap();
    }
}

/// Broker 0, the leader, dies; the store of the broker elected instead loads the
/// partition, and its view serves. Returns that broker.
fn fail_over(c: &mut Cluster, stores: &[OffsetsStore]) -> usize {
    c.kill(0).unwrap();
    let leader = c.leader().unwrap();
    stores[leader].become_leader(0).unwrap();
    stores[leader].load(0).unwrap();
    settle(c);
    leader
}

/// Expires what is due in `store`'s partitions, and waits for the tombstones.
fn expire(c: &mut Cluster, store: &OffsetsStore) {
    let expiry = store.expire();
    assert!(expiry.failed.is_empty(), "{:?}", expiry.failed);
    for h in expiry.handles {
        settle(c);
        assert!(h.poll().unwrap().is_ok());
    }
}

fn offsets(store: &OffsetsStore, group: &str) -> Vec<(String, i32, i64)> {
    store
        .fetch(group, None)
        .unwrap()
        .into_iter()
        .map(|((t, p), c)| (t, p, c.offset))
        .collect()
}

#[test]
fn commits_are_visible_once_committed() {
    let (mut c, stores) = cluster();
    let handle = stores[0]
        .commit(
            GROUP,
            &[commit_of("orders", 0, 10), commit_of("orders", 1, 20)],
        )
        .unwrap();
    assert!(handle.poll().is_none());
    assert_eq!(offsets(&stores[0], GROUP), vec![], "not committed yet");
    settle(&mut c);
    assert!(handle.poll().unwrap().is_ok());
    assert_eq!(
        offsets(&stores[0], GROUP),
        vec![("orders".into(), 0, 10), ("orders".into(), 1, 20)]
    );
    let one = stores[0]
        .fetch(GROUP, Some(&[("orders".into(), 1), ("other".into(), 0)]))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].1.offset, 20);
    assert_eq!(offsets(&stores[0], "nobody"), vec![]);
}

/// A commit with `acks=1` completes at the leader's write, and shows once committed all
/// the same: a failover before its followers copied it then takes back nothing a
/// consumer fetched. It used to show at once, and the new leader's view went back to
/// the offset before it.
#[test]
fn a_commit_with_acks_1_shows_once_committed() {
    let (mut c, stores) = cluster_with(cluster_config(), Acks::Leader);
    let first = stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 10)])
        .unwrap();
    assert!(first.poll().unwrap().is_ok(), "acknowledged at the write");
    assert_eq!(offsets(&stores[0], GROUP), vec![], "not committed yet");
    settle(&mut c);
    assert_eq!(offsets(&stores[0], GROUP), vec![("orders".into(), 0, 10)]);

    let second = stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 20)])
        .unwrap();
    assert!(second.poll().unwrap().is_ok());
    let fetched = offsets(&stores[0], GROUP);
    let leader = fail_over(&mut c, &stores);
    assert_eq!(
        offsets(&stores[leader], GROUP),
        vec![("orders".into(), 0, 10)]
    );
    assert_eq!(
        fetched,
        offsets(&stores[leader], GROUP),
        "nothing taken back"
    );
}

#[test]
fn followers_and_loading_partitions_refuse_with_typed_errors() {
    let (mut c, stores) = cluster();
    stores[0].commit(GROUP, &[commit_of("t", 0, 1)]).unwrap();
    settle(&mut c);
    assert!(matches!(
        stores[1].fetch(GROUP, None),
        Err(Error::NotCoordinator { partition: 0 })
    ));
    assert!(matches!(
        stores[1].groups(0),
        Err(Error::NotCoordinator { partition: 0 })
    ));
    assert!(matches!(
        stores[0].groups(3),
        Err(Error::NotCoordinator { partition: 3 })
    ));
    // Told to load while its replica does not lead (a late or early call): loading, it is
    // not the coordinator either, and says so.
    stores[1].become_leader(0).unwrap();
    assert!(matches!(
        stores[1].commit(GROUP, &[commit_of("t", 0, 1)]),
        Err(Error::NotCoordinator { partition: 0 })
    ));
    stores[1].load(0).unwrap();
    // Loaded, but its replica does not lead.
    assert!(matches!(
        stores[1].fetch(GROUP, None),
        Err(Error::NotCoordinator { .. })
    ));
    assert!(matches!(
        stores[0].commit_transactional(GROUP, 7, &[commit_of("t", 0, 1)]),
        Err(Error::TransactionsUnsupported)
    ));
    let long = "x".repeat(40_000);
    assert!(matches!(
        stores[0].commit(&long, &[commit_of("t", 0, 1)]),
        Err(Error::InvalidRequest(_))
    ));
    drop(c);
}

#[test]
fn a_new_leader_loads_exactly_the_acknowledged_offsets() {
    let (mut c, stores) = cluster();
    let mut last_acked = None;
    for i in 0..40 {
        let h = stores[0]
            .commit(GROUP, &[commit_of("orders", 0, i * 10)])
            .unwrap();
        settle(&mut c);
        if h.poll().is_some_and(|o| o.is_ok()) {
            last_acked = Some(i * 10);
        }
    }
    // One more commit in flight when the leader dies.
    let lost = stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 999)])
        .unwrap();
    let election = c.kill(0).unwrap().expect("a new leader");
    assert!(!matches!(lost.poll(), Some(Ok(_))), "never acknowledged");
    let new = &stores[election.leader];
    new.become_leader(0).unwrap();
    let steps = new.load(0).unwrap();
    assert!(steps > 1, "loaded in bounded chunks");
    settle(&mut c);
    assert_eq!(
        offsets(new, GROUP),
        vec![("orders".into(), 0, last_acked.unwrap())]
    );
    // And it takes commits.
    let h = new.commit(GROUP, &[commit_of("orders", 0, 1000)]).unwrap();
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert_eq!(offsets(new, GROUP), vec![("orders".into(), 0, 1000)]);
}

/// KIP-211: an empty group's offsets expire the retention after the group became empty,
/// not after they were committed; a group with members keeps them all; a standalone
/// consumer's offset (a group the embedder never mentioned) expires the retention after
/// its commit; an offset committed into an empty group is kept the retention after its
/// commit.
#[test]
fn offsets_expire_the_retention_after_their_group_became_empty() {
    let retention = partlog::offsets::DEFAULT_RETENTION_MS;
    let (mut c, stores) = cluster();
    let store = &stores[0];
    for group in ["quiet", "standalone", "reset"] {
        store.commit(group, &[commit_of("t", 0, 5)]).unwrap();
    }
    settle(&mut c);
    store.set_group_active("quiet", true);
    store.set_group_active("reset", false);
    // Day 5: an administrator resets the empty group's offset.
    c.clock().advance_ms(5 * DAY);
    store.commit("reset", &[commit_of("t", 0, 2)]).unwrap();
    settle(&mut c);
    // Day 8: the standalone consumer's offset is past the retention, the reset group's
    // commit is not; the quiet group's consumers never committed again, and still run.
    c.clock().advance_ms(3 * DAY);
    expire(&mut c, store);
    assert_eq!(offsets(store, "standalone"), vec![]);
    assert_eq!(offsets(store, "reset"), vec![("t".into(), 0, 2)]);
    assert_eq!(offsets(store, "quiet"), vec![("t".into(), 0, 5)]);
    // The quiet group's consumers stop: its offset, committed 8 days ago, stays for the
    // retention from now, however often the embedder says the group is empty.
    store.set_group_active("quiet", false);
    expire(&mut c, store);
    assert_eq!(offsets(store, "quiet"), vec![("t".into(), 0, 5)]);
    c.clock().advance_ms(retention - 1);
    store.set_group_active("quiet", false);
    expire(&mut c, store);
    assert_eq!(
        offsets(store, "quiet"),
        vec![("t".into(), 0, 5)],
        "not restarted"
    );
    assert_eq!(
        offsets(store, "reset"),
        vec![],
        "past the retention after its commit"
    );
    c.clock().advance_ms(1);
    expire(&mut c, store);
    assert_eq!(offsets(store, "quiet"), vec![]);
}

/// A commit still on its way (appended, its followers not caught up) when expiry or a
/// deletion runs: expiry leaves the offset, whose newer commit would otherwise be followed
/// by a tombstone that took it (an acknowledged commit lost), and a deletion covers it
/// (the group would come back with it). Both looked only at the committed offsets.
#[test]
fn expiry_spares_and_deletion_covers_a_commit_on_its_way() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    store.commit("standalone", &[commit_of("t", 0, 5)]).unwrap();
    store.commit("doomed", &[commit_of("t", 0, 5)]).unwrap();
    settle(&mut c);
    c.clock().advance_ms(8 * DAY);
    let newer = store.commit("standalone", &[commit_of("t", 0, 9)]).unwrap();
    let later = store.commit("doomed", &[commit_of("t", 1, 3)]).unwrap();
    let expiry = store.expire();
    assert!(expiry.failed.is_empty(), "{:?}", expiry.failed);
    assert_eq!(expiry.handles.len(), 1, "only doomed's t-0 is due");
    let deleted = store.delete_group("doomed").unwrap().expect("tombstones");
    settle(&mut c);
    for h in [&newer, &later, &deleted] {
        assert!(h.poll().expect("complete").is_ok());
    }
    assert_eq!(offsets(store, "standalone"), vec![("t".into(), 0, 9)]);
    assert_eq!(offsets(store, "doomed"), vec![]);
    // And so the next leader loads it.
    let leader = fail_over(&mut c, &stores);
    assert_eq!(
        offsets(&stores[leader], "standalone"),
        vec![("t".into(), 0, 9)]
    );
    assert_eq!(offsets(&stores[leader], "doomed"), vec![]);
}

/// Each partition expires on its own: one whose view is loaded but whose replica no
/// longer leads (the embedder has not yet told the store) is reported, and the
/// partitions after it still expire. An error there stopped the whole call, every time.
#[test]
fn a_partition_that_cannot_expire_keeps_no_other_from_it() {
    let (mut c, _) = cluster();
    let store = OffsetsStore::new(
        OffsetsConfig {
            partitions: 2,
            ..OffsetsConfig::default()
        },
        c.clock().clone(),
    );
    let leader = c.leader().unwrap();
    let follower = (0..3).find(|&b| b != leader).unwrap();
    // Partition 0 on a follower's replica, loaded as if it still led; 1 on the leader's.
    store.host(0, c.replica(follower).unwrap().clone());
    store.host(1, c.replica(leader).unwrap().clone());
    let group = (0..100)
        .map(|i| format!("g{i}"))
        .find(|g| store.partition_for(g) == 1)
        .unwrap();
    for index in [0, 1] {
        store.become_leader(index).unwrap();
        store.load(index).unwrap();
    }
    store.commit(&group, &[commit_of("t", 0, 5)]).unwrap();
    settle(&mut c);
    store.load(1).unwrap();
    // Partition 0's view is loaded, but its replica leads no epoch.
    assert!(matches!(
        store.load(0),
        Err(Error::NotCoordinator { partition: 0 })
    ));
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    let expiry = store.expire();
    assert_eq!(expiry.failed.len(), 1, "{:?}", expiry.failed);
    assert!(matches!(
        expiry.failed[0],
        (0, Error::NotCoordinator { partition: 0 })
    ));
    assert_eq!(expiry.handles.len(), 1, "partition 1 expired");
    settle(&mut c);
    assert_eq!(offsets(&store, &group), vec![]);
}

/// A new coordinator does not know which groups have members until their members find
/// it: for a grace after it became leader (Kafka's `group.max.session.timeout.ms`, 30
/// minutes, the longest a live member goes without reaching its coordinator), a group
/// the embedder has not mentioned keeps its offsets. A running group's quiet partition,
/// its offset past the retention, used to lose it at the first expiry after a failover,
/// as a standalone consumer's would; its members then reset. After the grace, a group
/// still not heard of has its offsets age from the takeover at the earliest: it may be
/// one that was empty when the coordinator changed, whose offsets Kafka keeps for the
/// retention after it became empty (see the test below).
#[test]
fn a_new_coordinator_expires_nothing_of_a_group_it_has_not_heard_of_for_a_grace() {
    let grace = partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS;
    let retention = partlog::offsets::DEFAULT_RETENTION_MS;
    let (mut c, stores) = cluster();
    stores[0]
        .commit(GROUP, &[commit_of("quiet", 0, 5)])
        .unwrap();
    stores[0].commit("lone", &[commit_of("t", 0, 1)]).unwrap();
    settle(&mut c);
    stores[0].set_group_active(GROUP, true);
    c.clock().advance_ms(8 * DAY);
    let leader = fail_over(&mut c, &stores);
    let took_over = c.clock().now_ms();
    let new = &stores[leader];
    expire(&mut c, new);
    assert_eq!(offsets(new, GROUP), vec![("quiet".into(), 0, 5)]);
    assert_eq!(offsets(new, "lone"), vec![("t".into(), 0, 1)]);

    // The group's members find the new coordinator within the grace; the standalone
    // consumer never says anything, and its offset, committed 8 days ago, expires the
    // retention after the takeover.
    c.clock().advance_ms(grace - 1_000);
    new.set_group_active(GROUP, true);
    expire(&mut c, new);
    c.clock().advance_ms(1_000);
    expire(&mut c, new);
    assert_eq!(offsets(new, "lone"), vec![("t".into(), 0, 1)]);
    c.clock().set_ms(took_over + retention - 1);
    expire(&mut c, new);
    assert_eq!(offsets(new, "lone"), vec![("t".into(), 0, 1)]);
    c.clock().advance_ms(1);
    expire(&mut c, new);
    assert_eq!(offsets(new, GROUP), vec![("quiet".into(), 0, 5)]);
    assert_eq!(offsets(new, "lone"), vec![]);
}

/// A group that was already empty when its coordinator failed over has no members to
/// tell the new one about it. Kafka's new coordinator knows from the group metadata it
/// loads, and keeps the offsets for the retention after the group became empty. Its
/// quiet partition's offset, committed long before, used to expire at the first expiry
/// after the grace, a week early: a consumer restarting the group the next day reset.
#[test]
fn an_empty_groups_offsets_outlive_a_coordinator_failover_for_the_retention() {
    let (mut c, stores) = cluster();
    stores[0]
        .commit(GROUP, &[commit_of("quiet", 0, 5)])
        .unwrap();
    settle(&mut c);
    stores[0].set_group_active(GROUP, true);
    c.clock().advance_ms(8 * DAY);
    stores[0].set_group_active(GROUP, false);
    c.clock().advance_ms(DAY / 24);
    let leader = fail_over(&mut c, &stores);
    let took_over = c.clock().now_ms();
    let new = &stores[leader];
    c.clock()
        .advance_ms(DAY / 48 + partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    expire(&mut c, new);
    c.clock().advance_ms(DAY);
    expire(&mut c, new);
    assert_eq!(offsets(new, GROUP), vec![("quiet".into(), 0, 5)]);
    // Nobody ever mentions it: it goes the retention after the takeover, an hour after
    // Kafka's coordinator would have taken it.
    c.clock()
        .set_ms(took_over + partlog::offsets::DEFAULT_RETENTION_MS);
    expire(&mut c, new);
    assert_eq!(offsets(new, GROUP), vec![]);
}

/// Within a new coordinator's grace, a group it has not heard of may be a running one:
/// deleting it or some of its offsets is refused with a typed error, and deletes nothing,
/// as Kafka's coordinator, which knows the group from its load, refuses a running one.
/// Once the embedder says the group is empty, or after the grace, they are deleted.
#[test]
fn a_new_coordinator_deletes_nothing_of_a_group_it_has_not_heard_of_for_a_grace() {
    let (mut c, stores) = cluster();
    for group in [GROUP, "told"] {
        stores[0].commit(group, &[commit_of("t", 0, 5)]).unwrap();
    }
    settle(&mut c);
    let leader = fail_over(&mut c, &stores);
    let new = &stores[leader];
    let unknown =
        |e: &Error| matches!(e, Error::GroupMembershipUnknown { group, .. } if group == GROUP);
    assert!(unknown(&new.delete_group(GROUP).unwrap_err()));
    let partitions = [("t".to_string(), 0)];
    assert!(unknown(
        &new.delete_offsets(GROUP, &partitions).unwrap_err()
    ));
    settle(&mut c);
    assert_eq!(offsets(new, GROUP), vec![("t".into(), 0, 5)]);

    new.set_group_active("told", false);
    let h = new.delete_group("told").unwrap().expect("tombstones");
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    let deletion = new.delete_offsets(GROUP, &partitions).unwrap();
    assert!(deletion.refused.is_empty());
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert!(deletion.handle.expect("tombstones").poll().unwrap().is_ok());
    assert_eq!(offsets(new, "told"), vec![]);
    assert_eq!(offsets(new, GROUP), vec![]);
}

/// The grace runs from when the new coordinator's view serves, not from when it began
/// loading: a running group's members find it only then (they are told the load is in
/// progress before). A load that took longer than the grace used to leave no grace at all,
/// and a group not heard of yet could be deleted at once.
#[test]
fn a_new_coordinators_grace_runs_from_when_its_view_serves() {
    let (mut c, stores) = cluster();
    stores[0].commit(GROUP, &[commit_of("t", 0, 5)]).unwrap();
    settle(&mut c);
    c.kill(0).unwrap();
    let new = &stores[c.leader().unwrap()];
    new.become_leader(0).unwrap();
    // A long load.
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    new.load(0).unwrap();
    settle(&mut c);
    let err = new.delete_group(GROUP).unwrap_err();
    assert!(
        matches!(&err, Error::GroupMembershipUnknown { group, .. } if group == GROUP),
        "{err}"
    );
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    let h = new.delete_group(GROUP).unwrap().expect("tombstones");
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert_eq!(offsets(new, GROUP), vec![]);
}

/// The same when the view begins to serve in the deletion's own call: the load read to
/// the log end while the new leader's high watermark lay below it, and the first request
/// after the followers' fetches moved it is the deletion. The grace was checked against
/// the time of `become_leader` before the view was promoted, and a running group's
/// offsets went.
#[test]
fn a_deletion_that_finds_the_view_newly_serving_is_within_the_grace() {
    let (mut c, stores) = cluster();
    stores[0].commit(GROUP, &[commit_of("t", 0, 5)]).unwrap();
    // The followers fetch the commit; they learn that it is committed at their next fetch.
    c.replicate().unwrap();
    c.kill(0).unwrap();
    let new = &stores[c.leader().unwrap()];
    let replica = c.replica(c.leader().unwrap()).unwrap().clone();
    assert!(replica.high_watermark() < replica.log().log_end_offset());
    new.become_leader(0).unwrap();
    new.load(0).unwrap();
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    settle(&mut c);
    assert_eq!(replica.high_watermark(), replica.log().log_end_offset());
    let err = new.delete_group(GROUP).unwrap_err();
    assert!(
        matches!(&err, Error::GroupMembershipUnknown { group, .. } if group == GROUP),
        "{err}"
    );
    assert_eq!(offsets(new, GROUP), vec![("t".into(), 0, 5)]);
}

/// A group the store knows nothing of (no offsets, never mentioned) is not found, as
/// Kafka's DeleteGroups and OffsetDelete answer `GROUP_ID_NOT_FOUND`, and nothing is
/// written; a group known to be empty without offsets (one deleted before) deletes
/// nothing, and is no error. Both used to answer "nothing deleted" alike.
#[test]
fn deleting_a_group_the_store_knows_nothing_of_is_group_id_not_found() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    store.commit(GROUP, &[commit_of("orders", 0, 5)]).unwrap();
    settle(&mut c);
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    let log_end = |c: &Cluster| c.replica(0).unwrap().log().log_end_offset();
    let end = log_end(&c);
    let not_found = |e: &Error| matches!(e, Error::GroupIdNotFound { group } if group == "nobody");
    assert!(not_found(&store.delete_group("nobody").unwrap_err()));
    let partitions = [("orders".to_string(), 0)];
    let err = store.delete_offsets("nobody", &partitions).unwrap_err();
    assert!(not_found(&err), "{err}");
    settle(&mut c);
    assert_eq!(log_end(&c), end, "nothing written");

    // Never mentioned but with offsets: deleted as before.
    let h = store.delete_group(GROUP).unwrap().expect("tombstones");
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert_eq!(offsets(store, GROUP), vec![]);
    // Deleted, it is known to be empty: nothing left to delete, and no error.
    assert!(store.delete_group(GROUP).unwrap().is_none());
    let deletion = store.delete_offsets(GROUP, &partitions).unwrap();
    assert!(deletion.handle.is_none() && deletion.refused.is_empty());
}

/// A store that stops leading a partition forgets what it was told of its groups'
/// membership, as Kafka's coordinator unloads them; leading it again, it learns them
/// anew. It used to keep a group's old empty-since time, and expired at once the offsets
/// the group kept while another broker coordinated it, where it ran and became empty
/// again only lately.
#[test]
fn a_store_forgets_the_memberships_of_a_partition_it_stopped_leading() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    store.commit(GROUP, &[commit_of("orders", 0, 5)]).unwrap();
    settle(&mut c);
    store.set_group_active(GROUP, false);
    assert_eq!(store.known_groups(), 1);
    store.become_follower(0);
    assert_eq!(store.known_groups(), 0);

    // Eight days on, the partition is back: the group just became empty.
    c.clock().advance_ms(8 * DAY);
    store.become_leader(0).unwrap();
    store.load(0).unwrap();
    store.set_group_active(GROUP, false);
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    expire(&mut c, store);
    assert_eq!(offsets(store, GROUP), vec![("orders".into(), 0, 5)]);
}

/// A store led again in a new term forgets what it was told of the partition's groups in
/// the old one, also when the embedder never told it that it had stepped down (it heard
/// of the new leadership only): another broker coordinated the group meanwhile, where it
/// may have members. It kept the group's old `EmptySince`, and expired at once the offset
/// of a quiet partition that the running group had kept for a week.
#[test]
fn a_store_led_again_in_a_new_term_forgets_the_memberships_of_the_old_one() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    store.commit(GROUP, &[commit_of("quiet", 0, 5)]).unwrap();
    settle(&mut c);
    store.set_group_active(GROUP, false);
    // Broker 1 coordinates the group for eight days, its members running; then broker 0
    // leads again, and its store hears only that.
    let away = c.elect(false).unwrap();
    assert_ne!(away.leader, 0);
    stores[away.leader].become_leader(0).unwrap();
    stores[away.leader].load(0).unwrap();
    settle(&mut c);
    stores[away.leader].set_group_active(GROUP, true);
    c.clock().advance_ms(8 * DAY);
    let back = c.elect(false).unwrap();
    assert_eq!(back.leader, 0);
    store.become_leader(0).unwrap();
    store.load(0).unwrap();
    settle(&mut c);
    assert_eq!(
        store.known_groups(),
        0,
        "the old term's memberships are gone"
    );
    expire(&mut c, store);
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_MEMBERSHIP_GRACE_MS);
    expire(&mut c, store);
    assert_eq!(offsets(store, GROUP), vec![("quiet".into(), 0, 5)]);
}

/// KIP-496: a running group whose subscription is known keeps the offsets of the topics
/// it subscribes to, however old, and has those of other topics expire the retention
/// after their commit; saying it has members keeps the subscription, and it is forgotten
/// once the group is empty, when the group's offsets follow KIP-211 again. A group with
/// members cannot be deleted either way.
#[test]
fn a_running_group_keeps_only_the_offsets_of_the_topics_it_subscribes_to() {
    let retention = partlog::offsets::DEFAULT_RETENTION_MS;
    let (mut c, stores) = cluster();
    let store = &stores[0];
    let group = "billing";
    let commits = [commit_of("orders", 0, 7), commit_of("legacy", 3, 9)];
    store.commit(group, &commits).unwrap();
    settle(&mut c);
    store.set_group_subscription(group, &["orders"]);
    // Day 2: the group moves on in `orders`, on another partition.
    c.clock().advance_ms(2 * DAY);
    store.commit(group, &[commit_of("orders", 1, 4)]).unwrap();
    settle(&mut c);
    store.set_group_active(group, true);
    c.clock().advance_ms(retention - 2 * DAY - 1);
    expire(&mut c, store);
    assert_eq!(
        offsets(store, group).len(),
        3,
        "nothing is past the retention yet"
    );
    // Day 7: `legacy`'s offset, committed the retention ago and no longer subscribed to,
    // expires; `orders` 0, as old, stays.
    c.clock().advance_ms(1);
    expire(&mut c, store);
    let orders = vec![("orders".into(), 0, 7), ("orders".into(), 1, 4)];
    assert_eq!(offsets(store, group), orders);
    assert!(matches!(
        store.delete_group(group),
        Err(Error::NonEmptyGroup { .. })
    ));
    // The group empties: from now on the retention counts from then.
    store.set_group_active(group, false);
    c.clock().advance_ms(retention - 1);
    expire(&mut c, store);
    assert_eq!(offsets(store, group), orders);
    c.clock().advance_ms(1);
    expire(&mut c, store);
    assert_eq!(offsets(store, group), vec![]);
}

/// OffsetDelete (KIP-496): an empty group's offsets for the partitions named go, and the
/// others stay; a running group's are kept, each refused, for the topics it subscribes
/// to, and deleted for the others in the same request, as Kafka answers partition by
/// partition; a running group whose subscription is unknown refuses the whole request.
#[test]
fn deleting_offsets_spares_the_topics_a_running_group_subscribes_to() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    let group = "billing";
    let commits = [
        commit_of("orders", 0, 7),
        commit_of("orders", 1, 8),
        commit_of("legacy", 0, 9),
    ];
    store.commit(group, &commits).unwrap();
    settle(&mut c);
    let part = |t: &str, p: i32| (t.to_string(), p);
    // Deletes, and returns whether tombstones were written and the partitions refused.
    let delete = |c: &mut Cluster, partitions: &[(String, i32)]| {
        let deletion = store.delete_offsets(group, partitions).unwrap();
        settle(c);
        let written = deletion.handle.map(|h| h.poll().expect("complete").is_ok());
        let refused: Vec<(String, i32)> = (deletion.refused.into_iter())
            .map(|(key, e)| {
                assert!(matches!(e, Error::GroupSubscribedToTopic { .. }), "{e}");
                key
            })
            .collect();
        (written, refused)
    };
    store.set_group_active(group, true);
    let err = store
        .delete_offsets(group, &[part("legacy", 0)])
        .unwrap_err();
    assert!(matches!(err, Error::NonEmptyGroup { .. }), "{err}");
    assert_eq!(offsets(store, group).len(), 3, "nothing deleted");
    store.set_group_subscription(group, &["orders"]);
    let asked = [part("legacy", 0), part("orders", 1), part("legacy", 5)];
    assert_eq!(
        delete(&mut c, &asked),
        (Some(true), vec![part("orders", 1)])
    );
    let orders = vec![("orders".into(), 0, 7), ("orders".into(), 1, 8)];
    assert_eq!(offsets(store, group), orders);
    assert_eq!(
        delete(&mut c, &[part("legacy", 0)]),
        (None, vec![]),
        "none left there"
    );
    store.set_group_active(group, false);
    assert_eq!(delete(&mut c, &[part("orders", 1)]), (Some(true), vec![]));
    assert_eq!(offsets(store, group), vec![("orders".into(), 0, 7)]);
}

#[test]
fn deleted_groups_and_expired_offsets_are_gone_for_the_next_leader_too() {
    let (mut c, stores) = cluster();
    for group in ["active", "idle", "doomed"] {
        stores[0].commit(group, &[commit_of("t", 0, 5)]).unwrap();
    }
    settle(&mut c);
    stores[0].set_group_active("doomed", false);
    let h = stores[0].delete_group("doomed").unwrap().unwrap();
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert_eq!(offsets(&stores[0], "doomed"), vec![]);
    assert!(stores[0].delete_group("doomed").unwrap().is_none());

    stores[0].set_group_active("active", true);
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    let expiry = stores[0].expire();
    assert!(expiry.failed.is_empty(), "{:?}", expiry.failed);
    assert_eq!(expiry.handles.len(), 1, "only the idle group expires");
    settle(&mut c);
    assert_eq!(offsets(&stores[0], "idle"), vec![]);
    assert_eq!(offsets(&stores[0], "active").len(), 1);

    let leader = fail_over(&mut c, &stores);
    for group in ["idle", "doomed"] {
        assert_eq!(offsets(&stores[leader], group), vec![], "{group}");
    }
    assert_eq!(offsets(&stores[leader], "active").len(), 1);
    // The listing of the partition has the one group left, and its offset.
    let groups = stores[leader].groups(0).unwrap();
    let listed: Vec<(&str, &str, i32, i64)> = groups
        .iter()
        .flat_map(|(g, offsets)| {
            offsets
                .iter()
                .map(move |((t, p), c)| (g.as_str(), t.as_str(), *p, c.offset))
        })
        .collect();
    assert_eq!(listed, vec![("active", "t", 0, 5)]);
    assert_eq!(groups.len(), 1);
}

/// Kafka-written records the store does not model are skipped with a count; transactional
/// commits apply at their COMMIT marker and drop at ABORT.
#[test]
fn loading_skips_unmodelled_records_and_follows_transaction_markers() {
    let (mut c, stores) = cluster();
    let log = c.replica(0).unwrap().log().clone();
    // A KIP-848 record (key version 5) and a group metadata record.
    let mut unmodelled = BatchBuilder::new();
    unmodelled.append(
        1,
        Some(&[0, 5, 0, 1, b'g', 0, 1, b'm']),
        Some(b"opaque"),
        &[],
    );
    unmodelled.append(1, Some(&[0, 2, 0, 1, b'g']), Some(b"opaque"), &[]);
    log.append_as_leader(&mut unmodelled.build().unwrap(), 1)
        .unwrap();
    for (producer, group, commit) in [(11i64, "committed", true), (12, "aborted", false)] {
        open_transaction(&log, producer, (group, "t"), 77);
        end_transaction(&log, producer, commit);
    }
    stores[0].become_leader(0).unwrap();
    stores[0].load(0).unwrap();
    // Written to the leader's log only: served once the followers have it.
    assert!(matches!(
        stores[0].fetch("committed", None),
        Err(Error::CoordinatorLoadInProgress { .. })
    ));
    settle(&mut c);
    assert_eq!(stores[0].skipped_records(0), 2);
    assert_eq!(offsets(&stores[0], "committed"), vec![("t".into(), 0, 77)]);
    assert_eq!(offsets(&stores[0], "aborted"), vec![]);
}

/// A Kafka-written offsets log where an exactly-once consumer's transactional commit was
/// aborted after a plain commit of the same partition: once the log is cleaned, the group
/// still resumes from the plain commit on a new leader (the cleaner once kept the aborted
/// record, the latest of its key, and dropped the committed one).
#[test]
fn a_cleaning_keeps_the_commit_an_aborted_transaction_followed() {
    let (mut c, stores) = cluster();
    stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 40)])
        .unwrap();
    settle(&mut c);
    let log = c.replica(0).unwrap().log().clone();
    open_transaction(&log, 21, (GROUP, "orders"), 99);
    let mut abort = partlog::fuzzing::marker_batch(21, false, 1).unwrap();
    log.append_as_coordinator(&mut abort, 1).unwrap();
    settle(&mut c);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let now = c.clock().now_ms();
    for b in 0..3 {
        c.replica(b).unwrap().log().force_roll().unwrap();
        let dir = c.log_dir(b).unwrap();
        let outcome = cleaner.clean_once(dir, now).unwrap();
        assert!(
            matches!(outcome, CleanOutcome::Cleaned { .. }),
            "broker {b}: {outcome:?}"
        );
    }
    // The leader moves: broker 1 loads its cleaned copy.
    stores[0].become_follower(0);
    let leader = fail_over(&mut c, &stores);
    assert_eq!(
        offsets(&stores[leader], GROUP),
        vec![("orders".into(), 0, 40)]
    );
}

/// A load left half way (the partition moved away and back) starts over and ends with
/// the same offsets, read across several segments.
#[test]
fn a_load_left_half_way_starts_over() {
    let (mut c, stores) = cluster();
    for i in 0..300 {
        let group = format!("group-{}", i % 7);
        stores[0]
            .commit(&group, &[commit_of("t", i % 3, i64::from(i))])
            .unwrap();
    }
    let leader = c.replica(0).unwrap().clone();
    for _ in 0..1_000 {
        if leader.high_watermark() == leader.log().log_end_offset() {
            break;
        }
        c.replicate().unwrap();
    }
    assert_eq!(leader.high_watermark(), leader.log().log_end_offset());
    let before: Vec<_> = (0..7)
        .map(|g| offsets(&stores[0], &format!("group-{g}")))
        .collect();
    assert!(leader.log().segment_count() > 3);
    for steps in [1, 3] {
        stores[0].become_follower(0);
        stores[0].become_leader(0).unwrap();
        for _ in 0..steps {
            let progress = stores[0].load_step(0).unwrap();
            assert!(!progress.done && progress.loaded_to < progress.end);
        }
    }
    stores[0].become_follower(0);
    stores[0].become_leader(0).unwrap();
    assert!(stores[0].load(0).unwrap() > 1, "in steps");
    let after: Vec<_> = (0..7)
        .map(|g| offsets(&stores[0], &format!("group-{g}")))
        .collect();
    assert_eq!(after, before);
    assert!(after.iter().all(|o| o.len() == 3));
}

/// A cluster whose offsets partition holds about 4 MiB in one segment: 40 commits of 100
/// partitions of `orders` by [`GROUP`], each with 1,000 bytes of metadata, the last at 39.
fn four_mib_of_commits() -> (Cluster, Vec<OffsetsStore>) {
    let (mut c, stores) = cluster_of(offsets_log_config());
    let metadata = "m".repeat(1000);
    for i in 0..40 {
        let offsets: Vec<OffsetCommit> = (0..100)
            .map(|p| OffsetCommit {
                metadata: metadata.clone(),
                ..commit_of("orders", p, i)
            })
            .collect();
        stores[0].commit(GROUP, &offsets).unwrap();
        settle(&mut c);
    }
    (c, stores)
}

/// A replica that steps down mid-load and is cut (a follower truncating where it diverged)
/// takes the bytes the load's reader was about to read: the load's next step says the
/// store no longer coordinates those groups, not that a file ended early.
#[test]
fn a_load_whose_replica_stepped_down_and_was_cut_says_not_coordinator() {
    // One segment, so that the cut shortens the file the load reads.
    let (c, stores) = four_mib_of_commits();
    let replica = c.replica(0).unwrap().clone();
    assert!(replica.log().size_bytes() > 3 << 20);
    stores[0].become_leader(0).unwrap();
    stores[0].load_step(0).unwrap();
    replica
        .become_follower(replica.leader_epoch() + 1, 1)
        .unwrap();
    replica.log().truncate_to(1).unwrap();
    let outcome = loop {
        match stores[0].load_step(0) {
            Ok(progress) if !progress.done && progress.loaded_to < progress.end => continue,
            other => break other,
        }
    };
    assert!(
        matches!(outcome, Err(Error::NotCoordinator { partition: 0 })),
        "{outcome:?}"
    );
}

/// Metadata longer than Kafka's `offset.metadata.max.bytes` (4096) is refused with a typed
/// error and nothing of the commit is written; a group with members cannot be deleted
/// (Kafka's `NON_EMPTY_GROUP`) until it is empty.
#[test]
fn long_metadata_and_deleting_a_group_with_members_are_refused() {
    let (mut c, stores) = cluster_of(offsets_log_config());
    let store = &stores[0];
    let mut long = commit_of("t", 1, 9);
    long.metadata = "m".repeat(4097);
    let err = store
        .commit(GROUP, &[commit_of("t", 0, 7), long.clone()])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OffsetMetadataTooLarge {
                partition: 1,
                length: 4097,
                max: 4096,
                ..
            }
        ),
        "{err}"
    );
    settle(&mut c);
    assert_eq!(offsets(store, GROUP), vec![], "nothing written");
    long.metadata.pop();
    let h = store.commit(GROUP, &[long]).unwrap();
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok(), "4096 bytes are taken");
    // Counted as Kafka counts it, in UTF-16 units: 3,000 euro signs are 9,000 bytes.
    let mut wide = commit_of("t", 2, 4);
    wide.metadata = "\u{20ac}".repeat(3000);
    let h = store.commit(GROUP, &[wide]).unwrap();
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok(), "3,000 characters are taken");
    let mut emoji = commit_of("t", 3, 4);
    emoji.metadata = "\u{1f600}".repeat(2049); // two UTF-16 units each
    let err = store.commit(GROUP, &[emoji]).unwrap_err();
    assert!(
        matches!(err, Error::OffsetMetadataTooLarge { length: 4098, .. }),
        "{err}"
    );

    store.set_group_active(GROUP, true);
    let err = store.delete_group(GROUP).unwrap_err();
    assert!(matches!(err, Error::NonEmptyGroup { .. }), "{err}");
    assert_eq!(
        offsets(store, GROUP),
        vec![("t".into(), 1, 9), ("t".into(), 2, 4)]
    );
    store.set_group_active(GROUP, false);
    let h = store
        .delete_group(GROUP)
        .unwrap()
        .expect("offsets to delete");
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    assert_eq!(offsets(store, GROUP), vec![]);
}

/// A view serves only while its replica leads the epoch it was loaded in. A replica that
/// stepped down, copied another leader's commits, and led again before the store heard
/// of either served its old view, without those commits: offsets went backwards.
#[test]
fn a_view_serves_only_in_the_epoch_it_was_loaded_in() {
    let (mut c, stores) = cluster();
    stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 5)])
        .unwrap();
    settle(&mut c);
    assert_eq!(offsets(&stores[0], GROUP), vec![("orders".into(), 0, 5)]);
    let (r0, r1) = (c.replica(0).unwrap().clone(), c.replica(1).unwrap().clone());
    let epoch = r0.leader_epoch();
    // Broker 1 leads the next epoch and commits 9; broker 0 follows and copies it.
    r0.become_follower(epoch + 1, 1).unwrap();
    r1.become_leader(epoch + 1, vec![0, 1, 2], vec![0, 1])
        .unwrap();
    let copy = || {
        for _ in 0..3 {
            let response = r1.fetch(&r0.fetch_request(1 << 20)).unwrap();
            assert!(r0.apply_fetch(&response).unwrap());
        }
    };
    copy();
    stores[1].become_leader(0).unwrap();
    stores[1].load(0).unwrap();
    let handle = (stores[1].commit(GROUP, &[commit_of("orders", 0, 9)])).unwrap();
    copy();
    assert!(handle.poll().expect("committed").is_ok());
    // Broker 0 leads again; its store was told neither change.
    r1.become_follower(epoch + 2, 0).unwrap();
    r0.become_leader(epoch + 2, vec![0, 1, 2], vec![0]).unwrap();
    let err = stores[0].fetch(GROUP, None).unwrap_err();
    assert!(
        matches!(err, Error::NotCoordinator { partition: 0 }),
        "{err}"
    );
    stores[0].become_leader(0).unwrap();
    stores[0].load(0).unwrap();
    assert_eq!(offsets(&stores[0], GROUP), vec![("orders".into(), 0, 9)]);
}

/// A load step that fails (here a read error mid-load) ends the load, as Kafka's
/// coordinator unloads a partition whose load failed: the next steps return the error
/// and requests are not served, until `become_leader` loads anew, from the log start with
/// a fresh view, to every committed offset. (The next step went on from the failed piece,
/// on a view that may hold part of it.)
#[test]
fn a_load_that_fails_midway_ends_until_the_next_become_leader() {
    let (c, stores) = four_mib_of_commits();
    stores[0].become_leader(0).unwrap();
    let first = stores[0].load_step(0).unwrap().loaded_to;
    for _ in 0..3 {
        stores[0].load_step(0).unwrap();
    }
    let disk = c.broker(0).disk.clone();
    disk.set_faults(partlog::io::sim::FaultPlan {
        read_eio: 1.0,
        path_suffix: Some(".log".into()),
        ..Default::default()
    });
    let failed = loop {
        match stores[0].load_step(0) {
            Ok(progress) if progress.done => panic!("the load read nothing more"),
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(matches!(failed, Error::Io { .. }), "{failed}");
    disk.clear_faults();
    let again = stores[0].load_step(0).unwrap_err();
    assert!(matches!(again, Error::Io { .. }), "{again}");
    assert!(matches!(
        stores[0].fetch(GROUP, None),
        Err(Error::NotCoordinator { partition: 0 })
    ));
    stores[0].become_leader(0).unwrap();
    let progress = stores[0].load_step(0).unwrap();
    assert_eq!(progress.loaded_to, first, "from the log start");
    stores[0].load(0).unwrap();
    let loaded = offsets(&stores[0], GROUP);
    assert_eq!(loaded.len(), 100);
    assert!(
        loaded.iter().all(|(_, _, offset)| *offset == 39),
        "{loaded:?}"
    );
}

/// A version 1 value (Kafka writes one for a commit that asks for a retention time, as
/// OffsetCommit v2-v4 may) carries an explicit expiry, and Kafka expires such an offset
/// at that time, whatever the retention (`OffsetExpirationConditionImpl`). It expired
/// `retention_ms` after its commit instead: too late or too early. A later plain commit
/// of the same partition drops the explicit expiry.
#[test]
fn an_explicit_expiry_of_a_version_1_value_is_kept() {
    const HOUR: i64 = 60 * 60 * 1000;
    let (mut c, stores) = cluster();
    let store = &stores[0];
    let now = c.clock().now_ms();
    let log = c.replica(0).unwrap().log().clone();
    let v1 = |offset: i64, expire: i64| {
        let mut v = vec![0, 1];
        v.extend_from_slice(&offset.to_be_bytes());
        v.extend_from_slice(&[0, 0]); // empty metadata
        v.extend_from_slice(&now.to_be_bytes());
        v.extend_from_slice(&expire.to_be_bytes());
        v
    };
    let mut batch = BatchBuilder::new();
    for (group, expire) in [("soon", now + HOUR), ("later", now + 30 * 24 * HOUR)] {
        let mut key = Vec::new();
        codec::encode_offset_commit_key(group, "t", 0, &mut key);
        batch.append(now, Some(&key), Some(&v1(5, expire)), &[]);
    }
    let mut key = Vec::new();
    codec::encode_offset_commit_key("recommitted", "t", 0, &mut key);
    batch.append(now, Some(&key), Some(&v1(5, now + HOUR)), &[]);
    log.append_as_leader(&mut batch.build().unwrap(), 1)
        .unwrap();
    settle(&mut c);
    store.become_leader(0).unwrap();
    store.load(0).unwrap();
    settle(&mut c);
    store
        .commit("recommitted", &[commit_of("t", 0, 6)])
        .unwrap();
    settle(&mut c);
    let all =
        |store: &OffsetsStore| ["soon", "later", "recommitted"].map(|g| offsets(store, g).len());
    c.clock().advance_ms(HOUR - 1);
    expire(&mut c, store);
    assert_eq!(all(store), [1, 1, 1]);
    c.clock().advance_ms(1);
    expire(&mut c, store);
    assert_eq!(all(store), [0, 1, 1], "at its expiry, not the retention's");
    // Past the retention (7 days) from the commits: the explicit 30 days hold.
    c.clock().advance_ms(partlog::offsets::DEFAULT_RETENTION_MS);
    expire(&mut c, store);
    assert_eq!(all(store), [0, 1, 0]);
    c.clock().set_ms(now + 30 * 24 * HOUR);
    expire(&mut c, store);
    assert_eq!(all(store), [0, 0, 0]);
}

/// One offsets partition's replica busy (stepping down, its truncation held in a sync)
/// with a request of its partition waiting on it: the store's one lock over every
/// partition was held meanwhile, and a fetch of a group on another partition waited too.
/// Each partition has a lock of its own now.
#[test]
fn one_busy_partition_holds_up_no_other() {
    use partlog::io::sim::SimStorage;
    use partlog::replica::{Acks, Partition, ReplicaConfig, TruncationMode};
    use partlog::ManualClock;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    let clock = Arc::new(ManualClock::new(1_000_000));
    let disks = [SimStorage::new(1), SimStorage::new(2)];
    let replicas: Vec<Arc<Partition>> = disks
        .iter()
        .map(|disk| {
            let log = common::cluster::open_log(disk, &clock);
            let config = ReplicaConfig {
                truncation: TruncationMode::HighWatermark,
                ..ReplicaConfig::new(0)
            };
            Arc::new(Partition::new(log, config, clock.clone(), 0))
        })
        .collect();
    let config = OffsetsConfig {
        partitions: 2,
        acks: Acks::Leader,
        ..OffsetsConfig::default()
    };
    let store = OffsetsStore::new(config, clock.clone());
    for (i, replica) in replicas.iter().enumerate() {
        // A follower that never fetches: the HW stays below what is appended.
        replica.become_leader(1, vec![0, 1], vec![0, 1]).unwrap();
        store.host(i as u32, replica.clone());
        store.become_leader(i as u32).unwrap();
        store.load(i as u32).unwrap();
    }
    let group_on = |p: u32| {
        (0..)
            .map(|i| format!("group-{i}"))
            .find(|g| store.partition_for(g) == p)
            .unwrap()
    };
    let (busy, free) = (group_on(0), group_on(1));
    store.commit(&busy, &[commit_of("t", 0, 5)]).unwrap();
    disks[0].hold_syncs(".log");
    std::thread::scope(|s| {
        let step_down = s.spawn(|| replicas[0].become_follower(2, 1));
        let mut waited = 0;
        while disks[0].syncs_waiting() == 0 {
            assert!(waited < 10_000, "the step-down never synced its cut");
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        let stuck = s.spawn(|| store.fetch(&busy, None));
        std::thread::sleep(Duration::from_millis(50));
        let (done, fetched) = mpsc::channel();
        let store = &store;
        let free = &free;
        s.spawn(move || {
            let _ = done.send(store.fetch(free, None));
        });
        let outcome = fetched.recv_timeout(Duration::from_secs(10));
        disks[0].release_syncs();
        let fetched = outcome.expect("the fetch waited for the other partition");
        assert!(fetched.unwrap().is_empty());
        step_down.join().unwrap().unwrap();
        let _ = stuck.join().unwrap();
    });
}

/// A group with more offsets than one batch of tombstones holds under the log's
/// `max_message_bytes`: its deletion and its expiry write several batches, and succeed.
/// One batch for all of them was refused as too large, every time: the group could never
/// be deleted, and no group after it on its partition ever expired.
#[test]
fn tombstones_of_a_large_group_go_in_several_batches() {
    let (mut c, stores) = cluster_of(LogConfig {
        segment_bytes: 16 << 10,
        index_bytes_max: 4096,
        max_message_bytes: 2048,
        ..offsets_log_config()
    });
    for group in [GROUP, "archive"] {
        for chunk in 0..10 {
            let commits: Vec<_> = (0..20)
                .map(|p| commit_of("orders", chunk * 20 + p, 7))
                .collect();
            stores[0].commit(group, &commits).unwrap();
            settle(&mut c);
        }
        assert_eq!(offsets(&stores[0], group).len(), 200);
    }
    stores[0].set_group_active(GROUP, false);
    let handle = stores[0].delete_group(GROUP).unwrap().expect("tombstones");
    settle(&mut c);
    assert!(handle.poll().unwrap().is_ok());
    assert_eq!(offsets(&stores[0], GROUP), vec![]);
    // Expired all at once: "archive" was never a group with members, so its offsets
    // age from their commit.
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    expire(&mut c, &stores[0]);
    assert_eq!(offsets(&stores[0], "archive"), vec![]);
    // The new leader's load finds every tombstone.
    let leader = fail_over(&mut c, &stores);
    assert_eq!(offsets(&stores[leader], GROUP), vec![]);
    assert_eq!(offsets(&stores[leader], "archive"), vec![]);
}

/// A commit whose `acks=all` wait timed out is in the leader's log, and committed once the
/// followers fetch it: the view shows it from then on, as Kafka's coordinator runtime
/// does. It used to be dropped until the next load, so the group read as empty, and a
/// delete of it wrote nothing, and the commit came back at the next leader's load.
#[test]
fn a_commit_that_timed_out_shows_once_it_is_committed() {
    let (mut c, stores) = cluster();
    let handle = stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 5)])
        .unwrap();
    // The followers fetch nothing for longer than the commit timeout (5 s), not long
    // enough to leave the ISR (30 s).
    c.tick(6_000).unwrap();
    assert!(matches!(handle.poll(), Some(Err(Error::RequestTimedOut))));
    assert_eq!(offsets(&stores[0], GROUP), vec![], "not committed yet");
    settle(&mut c);
    assert_eq!(offsets(&stores[0], GROUP), vec![("orders".into(), 0, 5)]);
    stores[0].set_group_active(GROUP, false);
    let deleted = stores[0].delete_group(GROUP).unwrap();
    assert!(deleted.is_some(), "the delete writes a tombstone");
    settle(&mut c);
    let leader = fail_over(&mut c, &stores);
    assert_eq!(
        offsets(&stores[leader], GROUP),
        vec![],
        "and it stays deleted"
    );
}

/// A delete of an empty group that fails (its partition still loading) keeps the time the
/// group became empty: its offsets expire 7 days after that, not 7 days after they were
/// committed. It used to forget the group first, whose old offsets then expired at once.
#[test]
fn a_failed_group_delete_keeps_when_the_group_became_empty() {
    let (mut c, stores) = cluster();
    stores[0]
        .commit(GROUP, &[commit_of("orders", 0, 5)])
        .unwrap();
    settle(&mut c);
    c.clock().advance_ms(6 * DAY);
    c.kill(0).unwrap();
    let leader = c.leader().unwrap();
    let store = &stores[leader];
    store.become_leader(0).unwrap();
    // The group's last member leaves now, on the new coordinator.
    store.set_group_active(GROUP, true);
    store.set_group_active(GROUP, false);
    assert!(matches!(
        store.delete_group(GROUP),
        Err(Error::CoordinatorLoadInProgress { partition: 0 })
    ));
    store.load(0).unwrap();
    settle(&mut c);
    // 8 days after the commit, 2 after the group became empty: kept.
    c.clock().advance_ms(2 * DAY);
    expire(&mut c, store);
    assert_eq!(offsets(store, GROUP), vec![("orders".into(), 0, 5)]);
}

/// An empty group is forgotten once it has no offsets left, as Kafka's coordinator drops
/// it: its last offsets expired, or it never committed any. The store kept every group it
/// was ever told of, and grew with each throwaway group id.
#[test]
fn an_empty_group_without_offsets_is_forgotten_at_expiry() {
    let (mut c, stores) = cluster();
    let store = &stores[0];
    for group in [GROUP, "idle", "busy"] {
        store.set_group_active(group, true);
    }
    store.commit(GROUP, &[commit_of("orders", 0, 5)]).unwrap();
    store.commit("busy", &[commit_of("orders", 0, 9)]).unwrap();
    settle(&mut c);
    store.set_group_active(GROUP, false);
    store.set_group_active("idle", false);
    assert_eq!(store.known_groups(), 3);
    // Not yet: GROUP still has an offset, and "idle" is forgotten at once.
    expire(&mut c, store);
    assert_eq!(store.known_groups(), 2);
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    expire(&mut c, store);
    assert_eq!(offsets(store, GROUP), vec![]);
    assert_eq!(
        store.known_groups(),
        1,
        "only the group with members is left"
    );
    assert_eq!(offsets(store, "busy"), vec![("orders".into(), 0, 9)]);
}

/// An OffsetCommit without partitions succeeds and writes nothing, as in Kafka; it was
/// refused as an empty batch.
#[test]
fn a_commit_of_no_offsets_succeeds_and_writes_nothing() {
    let (c, stores) = cluster();
    let end = c.replica(0).unwrap().log().log_end_offset();
    let handle = stores[0].commit(GROUP, &[]).unwrap();
    assert!(matches!(handle.poll(), Some(Ok(_))));
    assert_eq!(c.replica(0).unwrap().log().log_end_offset(), end);
    assert_eq!(offsets(&stores[0], GROUP), vec![]);
    // Still only on the coordinator.
    assert!(matches!(
        stores[1].commit(GROUP, &[]),
        Err(Error::NotCoordinator { partition: 0 })
    ));
}

/// A partition whose load began but whose replica stepped down since answers
/// `NotCoordinator`, so that clients look for the new coordinator; it answered
/// `CoordinatorLoadInProgress`, and they retried here for as long as nobody told the
/// store.
#[test]
fn a_loading_partition_whose_replica_stepped_down_is_not_the_coordinator() {
    let (mut c, stores) = cluster();
    stores[0].commit(GROUP, &[commit_of("t", 0, 1)]).unwrap();
    settle(&mut c);
    c.kill(0).unwrap();
    let leader = c.leader().unwrap();
    stores[leader].become_leader(0).unwrap();
    assert!(matches!(
        stores[leader].fetch(GROUP, None),
        Err(Error::CoordinatorLoadInProgress { partition: 0 })
    ));
    let replica = c.replica(leader).unwrap();
    let other = (0..3).find(|&b| b != leader && b != 0).unwrap() as i32;
    replica
        .become_follower(replica.leader_epoch() + 1, other)
        .unwrap();
    assert!(matches!(
        stores[leader].fetch(GROUP, None),
        Err(Error::NotCoordinator { partition: 0 })
    ));
}

/// A transactional offset commit in a Kafka-written log, left open: `producer`'s batch of
/// `group`'s offset `offset` for partition 0 of `topic`, appended to `log`.
fn open_transaction(
    log: &partlog::log::Log,
    producer: i64,
    (group, topic): (&str, &str),
    offset: i64,
) {
    let (mut key, mut value) = (Vec::new(), Vec::new());
    codec::encode_offset_commit_key(group, topic, 0, &mut key);
    let committed = codec::OffsetCommitValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1,
        expire_timestamp: -1,
    };
    codec::encode_offset_commit_value(&committed, &mut value);
    let mut txn = BatchBuilder::new();
    txn.transactional(true).producer(producer, 0, 0);
    txn.append(1, Some(&key), Some(&value), &[]);
    log.append_as_leader(&mut txn.build().unwrap(), 1).unwrap();
}

/// `producer`'s COMMIT (or ABORT) marker, appended to `log` as its transaction
/// coordinator does.
fn end_transaction(log: &partlog::log::Log, producer: i64, commit: bool) {
    let mut marker = BatchBuilder::transaction_marker(producer, 0, commit, 0, 1).unwrap();
    log.append_as_coordinator(&mut marker, 1).unwrap();
}

/// As Kafka's coordinator does, deleting a group writes tombstones for the offsets its
/// open transactions hold too, and expiry spares those: the group's offset of `t-0`,
/// committed by the transaction after the deletion, stays deleted at the next load; an
/// idle group's expired offset that a transaction wrote again is not taken from it. The
/// deletion used to leave the transaction's offset to come back, and the expiry's
/// tombstone dropped the transaction's newer offset.
#[test]
fn deletion_covers_and_expiry_spares_the_offsets_of_open_transactions() {
    let (mut c, stores) = cluster();
    let log = c.replica(0).unwrap().log().clone();
    stores[0].commit("doomed", &[commit_of("t", 1, 5)]).unwrap();
    stores[0].commit("idle", &[commit_of("t", 0, 100)]).unwrap();
    settle(&mut c);
    open_transaction(&log, 11, ("doomed", "t"), 500);
    open_transaction(&log, 12, ("idle", "t"), 200);
    stores[0].become_leader(0).unwrap();
    stores[0].load(0).unwrap();
    settle(&mut c);

    stores[0].set_group_active("doomed", false);
    let h = stores[0].delete_group("doomed").unwrap().unwrap();
    settle(&mut c);
    assert!(h.poll().unwrap().is_ok());
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    let expiry = stores[0].expire();
    assert!(expiry.failed.is_empty(), "{:?}", expiry.failed);
    assert!(
        expiry.handles.is_empty(),
        "idle's t-0 waits for its transaction"
    );
    for producer in [11, 12] {
        end_transaction(&log, producer, true);
    }
    settle(&mut c);

    let leader = fail_over(&mut c, &stores);
    assert_eq!(offsets(&stores[leader], "doomed"), vec![]);
    assert_eq!(offsets(&stores[leader], "idle"), vec![("t".into(), 0, 200)]);
}

/// An empty group whose every committed offset expires is kept while an open transaction
/// holds one of its offsets, as Kafka's coordinator keeps a group with open transactions:
/// forgotten, its offset committed later would age from its commit alone, not from when
/// the group became empty.
#[test]
fn expiry_keeps_an_empty_group_with_an_open_transaction() {
    let (mut c, stores) = cluster();
    let log = c.replica(0).unwrap().log().clone();
    stores[0].commit("g", &[commit_of("t", 1, 5)]).unwrap();
    settle(&mut c);
    open_transaction(&log, 13, ("g", "t"), 300);
    stores[0].become_leader(0).unwrap();
    stores[0].load(0).unwrap();
    settle(&mut c);
    stores[0].set_group_active("g", true);
    stores[0].set_group_active("g", false);
    let known = stores[0].known_groups();
    c.clock()
        .advance_ms(partlog::offsets::DEFAULT_RETENTION_MS + 1);
    let expiry = stores[0].expire();
    assert!(expiry.failed.is_empty(), "{:?}", expiry.failed);
    assert_eq!(expiry.handles.len(), 1, "t-1 expires");
    assert_eq!(stores[0].known_groups(), known, "g is kept");
}
