//! The node table's unit tests.

use super::*;

fn handle(n: u8) -> Handle {
    super::super::lower::tests_support::fake_handle(n)
}

fn found(parent: u64, name: &'static [u8], handle: Handle, ino: u64, nlink: u64) -> Found<'static> {
    Found {
        parent,
        name,
        handle,
        ino,
        kind: libc::S_IFREG,
        nlink,
    }
}

fn table() -> NodeTable {
    NodeTable::new(Node::new(ROOT_ID, b"", handle(0), 2, libc::S_IFDIR))
}

#[test]
fn nodes_stay_small() {
    // One per inode the kernel holds: 100,000 of them must fit in well under 20 MiB.
    assert!(
        std::mem::size_of::<Node>() <= 80,
        "{}",
        std::mem::size_of::<Node>()
    );
    assert_eq!(
        std::mem::size_of::<Option<Node>>(),
        std::mem::size_of::<Node>()
    );
    assert_eq!(std::mem::size_of::<NodeName>(), 24);
}

#[test]
fn lookup_counts_stick_at_their_top_and_node_ids_stay_below_2_pow_32() {
    let mut n = Node::new(ROOT_ID, b"a", handle(1), 5, libc::S_IFREG);
    n.set_nlookup(3);
    assert!(!n.forgotten(2));
    assert!(n.forgotten(5), "more forgotten than held leaves none");
    n.set_nlookup(u64::from(u32::MAX) + 7);
    n.looked_up();
    assert!(
        !n.forgotten(u64::from(u32::MAX)),
        "a saturated count never reaches zero"
    );
    assert_eq!(n.nlookup(), u64::from(u32::MAX));
    assert_eq!(n.kind(), libc::S_IFREG);

    // The last slot a shard may hand out makes the largest id below 2^32.
    assert_eq!(join(SHARDS - 1, MAX_SLOTS as u32 - 1), u64::from(u32::MAX));
    let mut shard = Shard {
        len: MAX_SLOTS,
        ..Default::default()
    };
    assert_eq!(shard.allocate(n), None);
    assert_eq!(shard.used, 0);
}

#[test]
fn names_inline_and_on_the_heap() {
    for name in [
        &b""[..],
        b"a",
        b"IMG_0001.jpg",
        &[b'x'; 22],
        &[b'y'; 23],
        &[b'z'; 255],
    ] {
        assert_eq!(NodeName::new(name).as_bytes(), name);
    }
    assert!(matches!(
        NodeName::new(&[b'x'; 22]),
        NodeName::Inline { .. }
    ));
    assert!(matches!(NodeName::new(&[b'x'; 23]), NodeName::Heap(_)));
}

#[test]
fn lookup_counts_follow_the_kernel() {
    let t = table();
    let a = t
        .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
        .unwrap()
        .nodeid;
    assert_eq!(
        t.register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
            .unwrap()
            .nodeid,
        a
    );
    assert_eq!(t.with(a, |n| n.nlookup()), Some(2));
    assert!(t.forget(a, 1).is_none());
    assert!(t.forget(a, 1).is_some());
    assert!(t.with(a, |_| ()).is_none(), "forgotten node is gone");
    assert_eq!(t.find_ino(100), None);
}

#[test]
fn batch_forget_of_more_than_held_and_bogus_ids_are_safe() {
    let t = table();
    let a = t
        .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
        .unwrap()
        .nodeid;
    assert!(t.forget(a, 99).is_some());
    assert!(t.forget(a, 1).is_none());
    for bogus in [0, 2, 63, 12345, u64::MAX, 1 << 40] {
        assert!(t.forget(bogus, 1).is_none());
        assert!(t.with(bogus, |_| ()).is_none());
    }
    assert!(t.forget(ROOT_ID, 1).is_none());
}

#[test]
fn reused_inode_number_with_new_handle_is_a_new_node() {
    let t = table();
    let a = t
        .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
        .unwrap()
        .nodeid;
    let b = t
        .register(found(ROOT_ID, b"b", handle(2), 100, 1), false)
        .unwrap()
        .nodeid;
    assert_ne!(a, b);
    assert_eq!(t.find_ino(100), Some(b));
    // Forgetting the old node must not unhook the new one.
    assert!(t.forget(a, 1).is_some());
    assert_eq!(t.find_ino(100), Some(b));
}

#[test]
fn each_name_of_a_linked_file_is_its_own_node() {
    let t = table();
    let a = t
        .register(found(ROOT_ID, b"a", handle(1), 100, 2), false)
        .unwrap()
        .nodeid;
    let b = t
        .register(found(7, b"other", handle(1), 100, 2), false)
        .unwrap()
        .nodeid;
    assert_ne!(
        a, b,
        "a decision must not depend on the name looked up last"
    );
    assert_eq!(
        t.register(found(ROOT_ID, b"a", handle(1), 100, 2), false)
            .unwrap()
            .nodeid,
        a
    );
    assert_eq!(
        t.with(a, |n| (n.parent(), n.name.as_bytes().to_vec())),
        Some((ROOT_ID, b"a".to_vec()))
    );
    t.renamed(100, (7, b"other"), (8, b"moved"));
    assert_eq!(
        t.with(b, |n| (n.parent(), n.name.as_bytes().to_vec())),
        Some((8, b"moved".to_vec()))
    );
    assert_eq!(t.with(a, |n| n.parent()), Some(ROOT_ID));
    assert!(t.forget(a, 2).is_some());
    assert!(t.forget(b, 1).is_some());
    assert_eq!(t.count(), 0);
}

#[test]
fn renaming_a_second_link_leaves_the_first_name_alone() {
    let t = table();
    // Looked up while it had one name: the inode's own node.
    let a = t
        .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
        .unwrap()
        .nodeid;
    // A second link appeared, then was looked up: a node for that name.
    let b = t
        .register(found(ROOT_ID, b"b", handle(1), 100, 2), false)
        .unwrap()
        .nodeid;
    assert_ne!(a, b);
    t.renamed(100, (ROOT_ID, b"b"), (ROOT_ID, b"c"));
    let name = |id| t.with(id, |n| n.name.as_bytes().to_vec());
    assert_eq!(name(a), Some(b"a".to_vec()), "the first name did not move");
    assert_eq!(name(b), Some(b"c".to_vec()));
}

#[test]
fn decisions_of_several_callers_live_side_by_side() {
    let mut n = Node::new(ROOT_ID, b"f", handle(1), 5, libc::S_IFREG);
    let v = |uid| CachedVerdicts {
        uid,
        stamp: 7,
        verdicts: crate::policy::Snapshot::default().decide_all(
            uid,
            &crate::policy::Target {
                path: b"Download/x.pdf",
                is_dir: false,
                owner: None,
                under_nomedia: false,
            },
        ),
    };
    for uid in [10057, 10058, 10059, 10060] {
        n.set_verdicts(v(uid));
    }
    for uid in [10057, 10058, 10059, 10060] {
        assert!(n.verdicts(uid, 7).is_some(), "{uid}");
        assert!(n.verdicts(uid, 8).is_none());
    }
    n.set_verdicts(v(10061));
    assert!(n.verdicts(10061, 7).is_some());
    assert_eq!(
        (10057..=10061)
            .filter(|&u| n.verdicts(u, 7).is_some())
            .count(),
        4
    );
}

#[test]
fn ids_never_collide_with_root_and_the_table_gives_memory_back() {
    let t = table();
    let mut ids = Vec::new();
    for ino in 0..10_000u64 {
        let id = t
            .register(
                found(ROOT_ID, b"x", handle((ino % 200) as u8), ino, 1),
                false,
            )
            .unwrap()
            .nodeid;
        assert!(id > ROOT_ID);
        assert_eq!(split(id).unwrap().0, shard_of_ino(ino));
        ids.push(id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "live ids are unique");
    assert_eq!(t.count(), 10_000);
    for &id in &ids {
        assert!(t.forget(id, 1).is_some());
    }
    assert_eq!(t.count(), 0);
    let held: usize = (0..SHARDS).map(|i| t.lock(i).chunks.len()).sum();
    assert_eq!(
        held, 0,
        "{held} chunks still allocated after everything was forgotten"
    );
}

#[test]
fn freed_slots_are_reused_lowest_first_and_live_ids_stay_unique() {
    let t = table();
    let ids: Vec<u64> = (0..2000u64)
        .map(|ino| {
            t.register(found(ROOT_ID, b"x", handle(1), ino, 1), false)
                .unwrap()
                .nodeid
        })
        .collect();
    for (i, &id) in ids.iter().enumerate() {
        if i % 2 == 1 {
            assert!(t.forget(id, 1).is_some());
        }
    }
    let again: Vec<u64> = (2000..3000u64)
        .map(|ino| {
            t.register(found(ROOT_ID, b"y", handle(2), ino, 1), false)
                .unwrap()
                .nodeid
        })
        .collect();
    let mut live: Vec<u64> = ids.iter().step_by(2).copied().chain(again).collect();
    assert_eq!(t.count(), live.len());
    for &id in &live {
        assert!(t.with(id, |_| ()).is_some());
    }
    live.sort();
    live.dedup();
    assert_eq!(live.len(), 2000);
    let chunks: usize = (0..SHARDS).map(|i| t.lock(i).chunks.len()).sum();
    assert!(
        chunks <= 2000 / CHUNK + SHARDS,
        "{chunks} chunks for 2000 nodes"
    );
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort();
    v
}

#[test]
fn the_name_index_follows_register_rename_and_forget() {
    let t = table();
    let dir = t
        .register(
            Found {
                kind: libc::S_IFDIR,
                ..found(ROOT_ID, b"DCIM", handle(1), 10, 1)
            },
            false,
        )
        .unwrap()
        .nodeid;
    let a = t
        .register(found(dir, b"a.jpg", handle(2), 11, 1), false)
        .unwrap()
        .nodeid;
    // A case variant on a case-sensitive lower tree: both are candidates.
    let b = t
        .register(found(dir, b"A.JPG", handle(3), 12, 1), false)
        .unwrap()
        .nodeid;
    let e = t
        .register(found(dir, "Été.jpg".as_bytes(), handle(4), 13, 1), false)
        .unwrap()
        .nodeid;
    assert_eq!(t.children_named(ROOT_ID, b"dcim"), vec![dir]);
    assert_eq!(sorted(t.children_named(dir, b"a.Jpg")), sorted(vec![a, b]));
    assert_eq!(t.children_named(dir, "éTÉ.JPG".as_bytes()), vec![e]);
    assert_eq!(t.children_named(ROOT_ID, b"a.jpg"), Vec::<u64>::new());
    assert_eq!(t.resolve(b"dcim/A.jpg").0, vec![dir]);
    assert_eq!(sorted(t.resolve(b"dcim/A.jpg").1), sorted(vec![a, b]));
    assert_eq!(t.resolve(b""), (vec![], vec![ROOT_ID]));
    assert_eq!(t.resolve(b"Music/x"), (vec![], vec![]));

    // Renamed: found under the new name only.
    t.renamed(11, (dir, b"a.jpg"), (ROOT_ID, b"moved.jpg"));
    assert_eq!(t.children_named(dir, b"a.jpg"), vec![b]);
    assert_eq!(t.children_named(ROOT_ID, b"MOVED.jpg"), vec![a]);
    // Looked up again under another name (moved behind our back): the same.
    t.register(found(dir, b"back.jpg", handle(2), 11, 1), false)
        .unwrap();
    assert_eq!(t.children_named(ROOT_ID, b"moved.jpg"), Vec::<u64>::new());
    assert_eq!(t.children_named(dir, b"back.jpg"), vec![a]);

    // Forgotten: gone from the index, and a new node reusing the id is found by its name.
    assert!(t.forget(b, 1).is_some());
    assert_eq!(t.children_named(dir, b"a.jpg"), Vec::<u64>::new());
    let c = t
        .register(found(dir, b"c.jpg", handle(5), 12, 1), false)
        .unwrap()
        .nodeid;
    assert_eq!(t.children_named(dir, b"c.jpg"), vec![c]);
    assert_eq!(t.children_named(dir, b"a.jpg"), Vec::<u64>::new());
}

#[test]
fn the_name_index_keeps_colliding_keys_apart_and_gives_memory_back() {
    let mut shard = NameShard::default();
    shard.add(7, 100);
    shard.add(7, 200);
    shard.add(7, 1 << 40);
    let mut out = Vec::new();
    shard.get(7, &mut out);
    assert_eq!(sorted(out), vec![100, 200, 1 << 40]);
    shard.remove(7, 100);
    shard.remove(7, 1 << 40);
    let mut out = Vec::new();
    shard.get(7, &mut out);
    assert_eq!(out, vec![200]);
    shard.remove(7, 200);
    assert!(shard.is_empty());

    let t = table();
    let ids: Vec<u64> = (0..3_000u64)
        .map(|ino| {
            t.register(found(ROOT_ID, b"same", handle(1), ino, 1), false)
                .unwrap()
                .nodeid
        })
        .collect();
    assert_eq!(t.children_named(ROOT_ID, b"SAME").len(), 3_000);
    for id in ids {
        t.forget(id, 1);
    }
    assert!(t.children_named(ROOT_ID, b"same").is_empty());
    let names: usize = t.names.iter().map(|s| s.lock().unwrap().slots()).sum();
    assert!(names <= SHARDS * (CHUNK + 4), "{names} slots kept");
}

#[test]
fn app_changes_find_only_their_packages_dirs() {
    let t = table();
    let dir = |parent, name: &'static [u8], ino| {
        t.register(
            Found {
                kind: libc::S_IFDIR,
                ..found(parent, name, handle(1), ino, 1)
            },
            false,
        )
        .unwrap()
        .nodeid
    };
    let android = dir(ROOT_ID, b"Android", 10);
    let data = dir(android, b"data", 11);
    dir(data, b"Com.Example.A", 12);
    dir(data, b"com.example.b", 13);
    // Android/obb was never looked up: nothing known there, nothing to drop.
    let mut got = t.app_dir_entries(&["com.example.a"]);
    got.sort();
    assert_eq!(
        got,
        vec![
            (data, b"Com.Example.A".to_vec()),
            (data, b"com.example.a".to_vec())
        ]
    );
    assert_eq!(
        t.app_dir_entries(&["com.example.c"]),
        vec![(data, b"com.example.c".to_vec())]
    );
    assert!(t.app_dir_entries::<&str>(&[]).is_empty());
    let obb = dir(android, b"OBB", 14);
    assert_eq!(
        t.app_dir_entries(&["com.example.c"]),
        vec![
            (data, b"com.example.c".to_vec()),
            (obb, b"com.example.c".to_vec())
        ]
    );
}

#[test]
fn caller_dependent_entries_are_found_across_runs() {
    let t = table();
    for ino in 0..5000u64 {
        t.register(found(ROOT_ID, b"x", handle(1), ino, 1), ino % 1000 == 0)
            .unwrap();
    }
    assert_eq!(t.caller_dependent_entries().len(), 5);
}

#[test]
fn memory_is_given_back_every_eighth_of_the_most_held_or_recorded_nodes() {
    for (most, period) in [
        (0, 1024),
        (8 * 1024, 1024),
        (16_000, 2000),
        (8 * 16 * 1024, 16 * 1024),
        (1 << 30, 16 * 1024),
    ] {
        assert_eq!(give_back_period(most), period, "{most} nodes at most");
    }
    // Without restart state, the most nodes the table held at once: 12,000, also after
    // forgets.
    let t = table();
    assert_eq!(t.give_back_period(), 1024, "an empty table");
    let register = |t: &NodeTable, ino: u64| {
        let name = format!("f{ino}");
        let f = found(ROOT_ID, b"f", handle((ino % 250) as u8), ino, 1);
        t.register(
            Found {
                name: name.as_bytes(),
                ..f
            },
            false,
        )
        .unwrap()
        .nodeid
    };
    let ids: Vec<u64> = (2..12_002u64).map(|ino| register(&t, ino)).collect();
    assert_eq!(t.give_back_period(), 1500, "12,000 nodes held");
    for id in ids {
        t.forget(id, 1);
    }
    assert_eq!(t.count(), 0);
    assert_eq!(t.give_back_period(), 1500, "12,000 nodes held at most");
    // With restart state, the table asks it: its record indexes follow node ids (a few gaps
    // between shards).
    let t = table();
    t.attach_journal(Arc::new(
        StateMap::map(crate::state::create().unwrap()).unwrap(),
    ));
    for ino in 2..12_002u64 {
        register(&t, ino);
    }
    let p = t.give_back_period();
    assert!(
        (1500..=1600).contains(&p),
        "{p} after 12,000 nodes recorded"
    );
}

#[test]
fn forgotten_nodes_give_their_restart_records_back_and_survivors_keep_theirs() {
    let fd = crate::state::create().unwrap();
    let probe = fd.try_clone().unwrap();
    let blocks = || {
        nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&probe))
            .unwrap()
            .st_blocks
    };
    let state = Arc::new(StateMap::map(fd).unwrap());
    let t = table();
    t.attach_journal(state.clone());
    let keep = t
        .register(found(ROOT_ID, b"keep", handle(1), 1, 1), false)
        .unwrap()
        .nodeid;
    // Distinct names, as most nodes have (nodes of one name are the name index's test).
    let ids: Vec<u64> = (2..20_002u64)
        .map(|ino| {
            let name = format!("f{ino}");
            t.register(
                Found {
                    name: name.as_bytes(),
                    ..found(ROOT_ID, b"f", handle((ino % 250) as u8), ino, 1)
                },
                false,
            )
            .unwrap()
            .nodeid
        })
        .collect();
    let full = blocks();
    for id in ids {
        t.forget(id, 1);
    }
    t.release_journal_pages();
    assert!(blocks() < full / 20, "{} of {full} blocks left", blocks());
    let again = t
        .register(found(ROOT_ID, b"new", handle(9), 99_999, 1), false)
        .unwrap()
        .nodeid;
    let fresh = table();
    fresh.restore(recover::read_all(&state, ROOT_ID + 1));
    assert_eq!(fresh.count(), 2);
    let name = |id| fresh.with(id, |n| n.name.as_bytes().to_vec());
    assert_eq!(name(keep), Some(b"keep".to_vec()));
    assert_eq!(name(again), Some(b"new".to_vec()));
}

#[test]
fn a_new_table_takes_over_the_recorded_nodes_at_their_ids() {
    let state = Arc::new(StateMap::map(crate::state::create().unwrap()).unwrap());
    let t = table();
    t.attach_journal(state.clone());
    let dir = t
        .register(
            Found {
                kind: libc::S_IFDIR,
                ..found(ROOT_ID, b"DCIM", handle(1), 10, 1)
            },
            true,
        )
        .unwrap()
        .nodeid;
    let a = t
        .register(found(dir, b"a.jpg", handle(2), 11, 1), false)
        .unwrap()
        .nodeid;
    t.register(found(dir, b"a.jpg", handle(2), 11, 1), false)
        .unwrap();
    let long: &'static [u8] = b"a-name-longer-than-a-record-holds-0123456789.jpg";
    let l = t
        .register(found(dir, long, handle(3), 12, 1), false)
        .unwrap()
        .nodeid;
    let gone = t
        .register(found(dir, b"gone", handle(4), 13, 1), false)
        .unwrap()
        .nodeid;
    let x = t
        .register(found(ROOT_ID, b"x", handle(5), 14, 2), false)
        .unwrap()
        .nodeid;
    let y = t
        .register(found(dir, b"y", handle(5), 14, 2), false)
        .unwrap()
        .nodeid;
    t.with(a, |n| n.set_backing_id(7));
    t.renamed(11, (dir, b"a.jpg"), (ROOT_ID, b"b.jpg"));
    assert!(t.forget(gone, 1).is_some());

    let fresh = table();
    let unnamed = fresh.restore(recover::read_all(&state, ROOT_ID + 1));
    assert_eq!(
        unnamed,
        vec![Unnamed {
            id: l,
            parent: dir,
            ino: 12,
            hash: Some(recover::name_hash(long)),
        }]
    );
    // Until it is named again, the node's name is unknown, and the name index has no entry.
    assert_eq!(fresh.with(l, |n| n.is_unnamed()), Some(true));
    fresh.rename_restored(&[(l, long.to_vec())]);
    assert_eq!(fresh.with(l, |n| n.is_unnamed()), Some(false));
    assert_eq!(fresh.count(), 5);
    let node = |id| {
        fresh.with(id, |n| {
            (n.parent(), n.name.as_bytes().to_vec(), n.nlookup())
        })
    };
    assert_eq!(node(a), Some((ROOT_ID, b"b.jpg".to_vec(), 2)));
    assert_eq!(node(l), Some((dir, long.to_vec(), 1)));
    assert_eq!(node(gone), None);
    assert_eq!(fresh.with(a, |n| n.backing_id()), Some(Some(7)));
    assert_eq!(fresh.with(dir, |n| n.caller_dependent()), Some(true));
    // The indexes are rebuilt: the same lookups find the same ids.
    assert_eq!(
        fresh
            .register(found(ROOT_ID, b"b.jpg", handle(2), 11, 1), false)
            .unwrap()
            .nodeid,
        a
    );
    assert_eq!(
        fresh
            .register(found(dir, b"y", handle(5), 14, 2), false)
            .unwrap()
            .nodeid,
        y
    );
    assert_ne!(y, x);
    assert_eq!(fresh.children_named(ROOT_ID, b"dcim"), vec![dir]);
    // A new node takes a free slot, never a restored one.
    let new = fresh
        .register(found(dir, b"new", handle(6), 15, 1), false)
        .unwrap()
        .nodeid;
    assert!(![dir, a, l, x, y].contains(&new));
    // A FORGET of more than is held is harmless.
    assert!(fresh.forget(l, 100).is_some());
    assert!(fresh.forget(l, 1).is_none());
}

#[test]
fn app_facts_are_allocated_only_when_used() {
    let mut n = Node::new(ROOT_ID, b"f", handle(1), 5, libc::S_IFREG);
    n.clear_verdicts();
    assert!(n.app.is_none());
    n.set_owner(OwnerFact::Tag(b"10057".to_vec().into()));
    assert_eq!(n.owner(), OwnerFact::Tag(b"10057".to_vec().into()));
    n.set_nomedia(Nomedia::Yes);
    assert_eq!(n.nomedia(), Nomedia::Yes);
    n.set_caller_dependent(true);
    assert!(n.caller_dependent() && n.nomedia() == Nomedia::Yes);
}
