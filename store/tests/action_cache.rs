//! Action results: create-if-absent, replace, absence and layout, on every backend (racing
//! writers are in `races.rs`).

mod common;

use bytes::Bytes;
use common::{per_backend, raw};
use trtfarm_store::{ActionKey, Published};

fn key(name: &str) -> ActionKey {
    ActionKey(*blake3::hash(name.as_bytes()).as_bytes())
}

per_backend!([file, memory, s3, azure] async fn first_writer_wins_and_replace_overwrites(t) {
    let kind = t.kind();
    let k = key("resnet50/fp16/sm90");
    assert_eq!(t.store.get_action_result(&k).await.unwrap(), None, "{kind}");

    let first = Bytes::from_static(b"{\"engine\":\"first\"}");
    let second = Bytes::from_static(b"{\"engine\":\"second\"}");
    assert_eq!(
        t.store.put_action_result(&k, first.clone()).await.unwrap(),
        Published::Created,
        "{kind}"
    );
    assert_eq!(
        t.store.put_action_result(&k, second.clone()).await.unwrap(),
        Published::AlreadyExisted,
        "{kind}"
    );
    assert_eq!(
        t.store.get_action_result(&k).await.unwrap(),
        Some(first),
        "{kind}"
    );

    t.store
        .replace_action_result(&k, second.clone())
        .await
        .unwrap();
    assert_eq!(
        t.store.get_action_result(&k).await.unwrap(),
        Some(second),
        "{kind}"
    );

    // Other keys are untouched, and an empty result is a result, not an absence.
    let other = key("other");
    assert_eq!(
        t.store.get_action_result(&other).await.unwrap(),
        None,
        "{kind}"
    );
    t.store
        .put_action_result(&other, Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        t.store.get_action_result(&other).await.unwrap(),
        Some(Bytes::new()),
        "{kind}"
    );
});

per_backend!([file, s3, azure] async fn action_results_live_under_ac_v1(t) {
    let k = key("layout");
    t.store
        .put_action_result(&k, Bytes::from_static(b"r"))
        .await
        .unwrap();
    let raw: &raw::RawStore = t.raw();
    assert_eq!(raw.get(&raw.action_path(&k)).await.unwrap(), b"r", "{}", t.kind());
});
