//! Produce, fetch and list offsets against three real agents replicating
//! one partition (RF 3: leader 1, ISR [1, 2, 3]), over gRPC on loopback,
//! with the coordinator replaced by the test double in `support`.
//!
//! The ISR lag time here is 30 s, so no follower leaves the ISR during a
//! test: a stopped follower holds the high watermark back.

mod support;

use std::time::Duration;

use anyhow::Result;
use ballast_proto::v1::{ErrorCode, MetadataRequest, ProducePartition, ProduceRequest};
use support::{
    Cluster, batch, decode, eventually, fetch, list_offset, produce, produce_ok, replication,
};

const T: &str = "orders";

async fn cluster(configs: &[(&str, &str)]) -> Result<Cluster> {
    let c = Cluster::start(3, replication(Duration::from_secs(30))).await?;
    c.double.create_topic(T, &[&[1, 2, 3]], configs);
    c.double.push_all().await;
    for id in 1..=3 {
        c.wait_for_role(id, T, 0).await?;
    }
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_one_and_all_replicate_and_the_high_watermark_advances() -> Result<()> {
    let c = cluster(&[("min.insync.replicas", "2")]).await?;
    let mut leader = c.data(1).await?;

    assert_eq!(produce_ok(&mut leader, T, 1, &["a", "b", "c"]).await?, 0);
    // acks=all answers once every ISR member has the records: the high
    // watermark is past them when it does.
    assert_eq!(produce_ok(&mut leader, T, -1, &["d", "e"]).await?, 3);
    assert!(c.high_watermark(1, T, 0).unwrap() >= 5);

    // Two batches in one request are appended in request order.
    let mut two = batch(&["f"], 2_000);
    two.extend(batch(&["g", "h"], 2_001));
    let r = produce(&mut leader, T, 0, -1, two, 10_000).await?;
    assert_eq!((r.error(), r.base_offset), (ErrorCode::None, 5));

    let f = fetch(&mut leader, T, 0, 0, 1_000).await?;
    assert_eq!(f.error(), ErrorCode::None);
    assert_eq!(f.high_watermark, 8);
    let got = decode(&f.records)?;
    let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, (*v).to_owned()))
        .collect();
    assert_eq!(got, want);

    // Followers hold everything and learn the high watermark.
    for id in [2, 3] {
        eventually(&format!("follower {id} catches up"), || async {
            (c.log_end(id, T, 0) == Some(8) && c.high_watermark(id, T, 0) == Some(8)).then_some(())
        })
        .await?;
    }
    // A fetch from the middle of a batch returns the whole batch.
    let f = fetch(&mut leader, T, 0, 7, 0).await?;
    assert_eq!(decode(&f.records)?.first().map(|r| r.0), Some(6));
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_never_see_past_the_high_watermark() -> Result<()> {
    let mut c = cluster(&[]).await?;
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["replicated"]).await?;
    c.stop(3).await?;

    // Written by the leader, but follower 3 (still in the ISR) lacks it.
    produce_ok(&mut leader, T, 1, &["unreplicated-1", "unreplicated-2"]).await?;
    assert_eq!(c.log_end(1, T, 0), Some(3));
    let f = fetch(&mut leader, T, 0, 0, 0).await?;
    assert_eq!(f.error(), ErrorCode::None);
    assert_eq!((f.high_watermark, f.log_end_offset), (1, 3));
    assert_eq!(decode(&f.records)?, vec![(0, "replicated".to_owned())]);
    // At the high watermark: nothing yet, however long we wait.
    let f = fetch(&mut leader, T, 0, 1, 200).await?;
    assert_eq!(f.error(), ErrorCode::None);
    assert!(f.records.is_empty());
    assert_eq!(list_offset(&mut leader, T, -1).await?.offset, 1);

    // acks=all cannot complete while 3 is away: the request times out
    // (the records are written, not acknowledged).
    let r = produce(&mut leader, T, 0, -1, batch(&["waits"], 5), 300).await?;
    assert_eq!(r.error(), ErrorCode::RequestTimedOut, "{}", r.error_message);

    // 3 comes back, catches up, and the consumer sees everything.
    c.restart(3).await?;
    let records = eventually("the high watermark reaches the log end", || async {
        let mut leader = c.data(1).await.ok()?;
        let f = fetch(&mut leader, T, 0, 1, 500).await.ok()?;
        (f.high_watermark == 4).then_some(f.records)
    })
    .await?;
    let values: Vec<String> = decode(&records)?.into_iter().map(|r| r.1).collect();
    assert_eq!(values, vec!["unreplicated-1", "unreplicated-2", "waits"]);
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_answers_when_records_arrive() -> Result<()> {
    let c = cluster(&[]).await?;
    let mut consumer = c.data(1).await?;
    let waiting = tokio::spawn(async move { fetch(&mut consumer, T, 0, 0, 10_000).await });
    // Whenever the poll started, the records below wake it well before
    // its 10 s wait ends; only the content is checked.
    let mut producer = c.data(1).await?;
    produce_ok(&mut producer, T, -1, &["wake-up"]).await?;
    let f = waiting.await??;
    assert_eq!(f.error(), ErrorCode::None);
    assert_eq!(decode(&f.records)?, vec![(0, "wake-up".to_owned())]);
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_leader_carries_the_leader_hint_and_metadata_names_the_leader() -> Result<()> {
    let c = cluster(&[]).await?;
    let mut follower = c.data(2).await?;
    let r = produce(&mut follower, T, 0, 1, batch(&["x"], 1), 1_000).await?;
    assert_eq!(r.error(), ErrorCode::NotLeader);
    let hint = r.leader_hint.expect("a leader hint");
    assert_eq!((hint.leader_id, hint.leader_epoch), (1, 0));
    assert_eq!(hint.address, c.agent(1).advertised_address());
    assert_eq!(c.log_end(2, T, 0), Some(0));

    // Consumers fetch from the leader only.
    let f = fetch(&mut follower, T, 0, 0, 0).await?;
    assert_eq!(f.error(), ErrorCode::NotLeader);
    assert_eq!(f.leader_hint.map(|h| h.leader_id), Some(1));
    let l = list_offset(&mut follower, T, -1).await?;
    assert_eq!(l.error(), ErrorCode::NotLeader);

    let r = produce(
        &mut follower,
        "no-such-topic",
        0,
        1,
        batch(&["x"], 1),
        1_000,
    )
    .await?;
    assert_eq!(r.error(), ErrorCode::UnknownTopicOrPartition);

    let m = follower
        .metadata(MetadataRequest {
            topics: vec![T.into(), "no-such-topic".into()],
        })
        .await?
        .into_inner();
    let mut brokers: Vec<(i32, String)> = m
        .brokers
        .iter()
        .map(|b| (b.broker_id, b.address.clone()))
        .collect();
    brokers.sort();
    let want: Vec<(i32, String)> = (1..=3)
        .map(|id| (id, c.agent(id).advertised_address().to_owned()))
        .collect();
    assert_eq!(brokers, want);
    let t = m.topics.iter().find(|t| t.name == T).expect("topic");
    assert_eq!(t.partitions.len(), 1);
    let p = &t.partitions[0];
    assert_eq!((p.leader, p.leader_epoch), (1, 0));
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2, 3], vec![1, 2, 3])
    );
    let missing = m
        .topics
        .iter()
        .find(|t| t.name == "no-such-topic")
        .expect("named");
    assert_eq!(missing.error(), ErrorCode::UnknownTopicOrPartition);
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_batches_and_requests_are_refused_by_name_and_nothing_is_written() -> Result<()> {
    let c = cluster(&[("max.message.bytes", "1000")]).await?;
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["ok"]).await?;

    let mut corrupt = batch(&["flipped"], 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let r = produce(&mut leader, T, 0, 1, corrupt, 1_000).await?;
    assert_eq!(r.error(), ErrorCode::CorruptMessage, "{}", r.error_message);

    // A good batch followed by a corrupt one: the whole partition entry is
    // refused.
    let mut half = batch(&["good"], 1);
    let mut bad = batch(&["bad"], 1);
    bad[20] ^= 1;
    half.extend(bad);
    let r = produce(&mut leader, T, 0, 1, half, 1_000).await?;
    assert_eq!(r.error(), ErrorCode::CorruptMessage);

    let big = "x".repeat(2_000);
    let r = produce(&mut leader, T, 0, 1, batch(&[&big], 1), 1_000).await?;
    assert_eq!(r.error(), ErrorCode::RecordTooLarge, "{}", r.error_message);

    // The request limit of these agents is 256 KiB.
    let huge: Vec<u8> = batch(&["y"], 1).repeat(300 << 10 >> 6);
    let r = produce(&mut leader, T, 0, 1, huge, 1_000).await?;
    assert_eq!(r.error(), ErrorCode::RequestTooLarge, "{}", r.error_message);

    let r = leader
        .produce(ProduceRequest {
            acks: 2,
            timeout_ms: 1_000,
            partitions: vec![ProducePartition {
                topic: T.into(),
                partition: 0,
                records: batch(&["z"], 1),
            }],
        })
        .await?
        .into_inner();
    assert_eq!(r.results[0].error(), ErrorCode::InvalidRequest);

    assert_eq!(c.log_end(1, T, 0), Some(1));
    let f = fetch(&mut leader, T, 0, 0, 0).await?;
    assert_eq!(decode(&f.records)?, vec![(0, "ok".to_owned())]);
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offset_out_of_range_carries_the_range_and_list_offsets_finds_times() -> Result<()> {
    let c = cluster(&[]).await?;
    let mut leader = c.data(1).await?;
    for (i, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let r = produce(
            &mut leader,
            T,
            0,
            -1,
            batch(&[&format!("v{i}")], ts),
            10_000,
        )
        .await?;
        assert_eq!((r.error(), r.base_offset), (ErrorCode::None, i as i64));
    }

    let f = fetch(&mut leader, T, 0, 100, 0).await?;
    assert_eq!(f.error(), ErrorCode::OffsetOutOfRange);
    assert_eq!((f.log_start_offset, f.log_end_offset), (0, 3));
    let f = fetch(&mut leader, T, 0, -5, 0).await?;
    assert_eq!(f.error(), ErrorCode::OffsetOutOfRange);

    let earliest = list_offset(&mut leader, T, -2).await?;
    assert_eq!((earliest.error(), earliest.offset), (ErrorCode::None, 0));
    let latest = list_offset(&mut leader, T, -1).await?;
    assert_eq!((latest.offset, latest.leader_epoch), (3, 0));
    let by_time = list_offset(&mut leader, T, 1_500).await?;
    assert_eq!((by_time.offset, by_time.timestamp), (1, 2_000));
    let exact = list_offset(&mut leader, T, 3_000).await?;
    assert_eq!(exact.offset, 2);
    let after = list_offset(&mut leader, T, 9_999).await?;
    assert_eq!((after.error(), after.offset), (ErrorCode::None, -1));
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_replication_mode_answers_acks_all_after_the_leaders_write() -> Result<()> {
    let mut c = cluster(&[
        ("replication.mode", "async"),
        ("min.insync.replicas", "3"),
        ("flush.mode", "sync"),
    ])
    .await?;
    c.stop(2).await?;
    c.stop(3).await?;
    let mut leader = c.data(1).await?;
    // Sync mode would wait for 2 and 3 (still in the ISR); async answers
    // at once, with the records written (and fsynced: flush.mode=sync).
    let r = produce(&mut leader, T, 0, -1, batch(&["fast"], 1), 60_000).await?;
    assert_eq!((r.error(), r.base_offset), (ErrorCode::None, 0));
    assert_eq!(c.high_watermark(1, T, 0), Some(0));
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_leader_answers_waiting_producers_with_not_leader() -> Result<()> {
    let mut c = cluster(&[]).await?;
    c.stop(3).await?;
    let mut leader = c.data(1).await?;
    let waiting = tokio::spawn(async move {
        produce(&mut leader, T, 0, -1, batch(&["in-flight"], 1), 60_000).await
    });
    eventually("the leader appended the records", || async {
        (c.log_end(1, T, 0)? == 1).then_some(())
    })
    .await?;
    // Follower 3 is away and still in the ISR: the producer waits until
    // the leader stops, which answers it (instead of its 60 s timeout).
    c.stop(1).await?;
    let r = waiting.await??;
    assert_eq!(r.error(), ErrorCode::NotLeader, "{}", r.error_message);
    c.shutdown().await
}
