//! ISR tracking by a real leader among three real agents: followers that
//! stop leave the ISR after `replica.lag.time.max.ms` (1 s here), come
//! back once caught up, and `min.insync.replicas` refuses acks=all when the
//! ISR is too small. The coordinator is the test double in `support`,
//! which records every AlterIsr it accepts and pushes the result.

mod support;

use std::time::Duration;

use anyhow::Result;
use ballast_proto::v1::{ErrorCode, MetadataRequest};
use support::{Cluster, batch, eventually, produce, produce_ok, replication};

const T: &str = "events";

async fn cluster(configs: &[(&str, &str)]) -> Result<Cluster> {
    let c = Cluster::start(3, replication(Duration::from_secs(1))).await?;
    c.double.create_topic(T, &[&[1, 2, 3]], configs);
    c.double.push_all().await;
    for id in 1..=3 {
        c.wait_for_role(id, T, 0).await?;
    }
    Ok(c)
}

/// The ISR as the leader reports it in Metadata.
async fn leader_isr(c: &Cluster) -> Option<Vec<i32>> {
    let mut client = c.data(1).await.ok()?;
    let m = client
        .metadata(MetadataRequest {
            topics: vec![T.into()],
        })
        .await
        .ok()?
        .into_inner();
    Some(m.topics.first()?.partitions.first()?.isr.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_leaves_the_isr_and_rejoins_after_catching_up() -> Result<()> {
    let mut c = cluster(&[]).await?;
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["before"]).await?;

    c.stop(3).await?;
    // The leader's log end must move for 3 to fall behind (a follower at
    // the leader's end is in sync however long it is silent).
    produce_ok(&mut leader, T, 1, &["while-3-is-away"]).await?;
    eventually("the leader shrinks the ISR to [1, 2]", || async {
        let shrunk = c
            .double
            .accepted_alter_isr()
            .iter()
            .any(|r| r.new_isr == [1, 2] && r.broker_id == 1);
        (shrunk && c.double.partition(T, 0).isr == [1, 2] && leader_isr(&c).await? == [1, 2])
            .then_some(())
    })
    .await?;
    // With 3 out of the ISR, acks=all completes again.
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["acknowledged-by-1-and-2"]).await?;

    c.restart(3).await?;
    eventually("3 catches up and rejoins the ISR", || async {
        let expanded = c
            .double
            .accepted_alter_isr()
            .iter()
            .any(|r| r.new_isr == [1, 2, 3]);
        (expanded && leader_isr(&c).await? == [1, 2, 3] && c.log_end(3, T, 0)? == 3).then_some(())
    })
    .await?;
    // Every accepted change was planned at the partition epoch before it.
    let accepted = c.double.accepted_alter_isr();
    for (i, r) in accepted.iter().enumerate() {
        assert_eq!(r.partition_epoch, i as i32, "{accepted:?}");
        assert_eq!(r.leader_epoch, 0);
    }
    // acks=all now waits for 3 too, and succeeds.
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["all-three"]).await?;
    eventually("3 has the last record", || async {
        (c.log_end(3, T, 0)? == 4).then_some(())
    })
    .await?;
    c.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn min_insync_replicas_refuses_acks_all_once_two_replicas_are_gone() -> Result<()> {
    let mut c = cluster(&[("min.insync.replicas", "2")]).await?;
    let mut leader = c.data(1).await?;
    produce_ok(&mut leader, T, -1, &["safe"]).await?;
    c.stop(2).await?;
    c.stop(3).await?;
    produce_ok(&mut leader, T, 1, &["leader-only"]).await?;

    // Until the leader drops 2 and 3 from the ISR, acks=all waits (and
    // times out, or fails after the append once the ISR shrinks); then it
    // is refused before anything is written.
    let refused = eventually("acks=all is refused with NOT_ENOUGH_REPLICAS", || async {
        let mut leader = c.data(1).await.ok()?;
        let before = c.log_end(1, T, 0)?;
        let r = produce(&mut leader, T, 0, -1, batch(&["refused"], 1), 300)
            .await
            .ok()?;
        match r.error() {
            ErrorCode::NotEnoughReplicas => Some((before, r)),
            ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicasAfterAppend => None,
            other => panic!("unexpected answer {other:?}: {}", r.error_message),
        }
    })
    .await?;
    let (before, r) = refused;
    assert!(
        r.error_message.contains("min.insync.replicas"),
        "{}",
        r.error_message
    );
    assert_eq!(c.log_end(1, T, 0), Some(before), "nothing was written");
    assert_eq!(c.double.partition(T, 0).isr, vec![1]);
    // acks=1 still works.
    produce_ok(&mut leader, T, 1, &["acks-1"]).await?;
    c.shutdown().await
}
