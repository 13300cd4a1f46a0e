//! Action results: create-if-absent, replace, absence, and racing writers.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::TestStore;
use trtfarm_store::{ActionKey, Published};

fn key(name: &str) -> ActionKey {
    ActionKey(*blake3::hash(name.as_bytes()).as_bytes())
}

#[tokio::test]
async fn first_writer_wins_and_replace_overwrites() {
    for t in TestStore::all() {
        let kind = t.store.kind().to_string();
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
            Some(Bytes::new())
        );
    }
}

#[tokio::test]
async fn action_results_live_under_ac_v1() {
    let t = TestStore::file();
    let k = key("layout");
    t.store
        .put_action_result(&k, Bytes::from_static(b"r"))
        .await
        .unwrap();
    let path = t.root.as_ref().unwrap().join("ac/v1").join(k.hex());
    assert_eq!(std::fs::read(path).unwrap(), b"r");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_racing_writers_create_exactly_once() {
    for t in TestStore::all() {
        let kind = t.store.kind().to_string();
        for round in 0..5 {
            let k = key(&format!("race-{round}"));
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let store = Arc::clone(&t.store);
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        let payload = Bytes::from(format!("writer-{i}"));
                        barrier.wait().await;
                        let outcome = store.put_action_result(&k, payload.clone()).await.unwrap();
                        (outcome, payload)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (outcome, payload) = task.await.unwrap();
                if outcome == Published::Created {
                    winners.push(payload);
                }
            }
            assert_eq!(winners.len(), 1, "{kind} round {round}: {winners:?}");
            assert_eq!(
                t.store.get_action_result(&k).await.unwrap(),
                Some(winners.pop().unwrap()),
                "{kind} round {round}: stored result is not the winner's"
            );
        }
    }
}
