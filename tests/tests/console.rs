//! The web console (`/ui`) in headless Chromium against a running `ballast
//! dev` cluster: the page loads, shows the brokers and a topic the test
//! created, and shows a broker that stopped as fenced. Needs Debian's
//! `chromium` (`apt-get install -y chromium`; `scripts/deps --with-browser`
//! installs it); without it the test fails with that command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use ballast_client::producer::{Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{on_active, start_agent, wait_live_brokers};
use ballast_tests::process::{BallastProcess, eventually, free_port, run_ballast};

const WAIT: Duration = Duration::from_secs(60);

fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name.to_owned();
        }
    }
    panic!(
        "no Chromium found: install it with `sudo apt-get install -y chromium` \
         (or run scripts/deps --with-browser)"
    );
}

/// The page's DOM after its scripts ran (headless Chromium, --dump-dom).
async fn dom(browser: &str, url: &str) -> String {
    let (browser, url) = (browser.to_owned(), url.to_owned());
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("run chromium");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_brokers_topics_and_a_stopped_broker() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev").to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let _dev = BallastProcess::start(
        &[
            "dev",
            "--data-dir",
            &data,
            "--listen",
            &listen,
            "--http-listen",
            &http,
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    let addrs = vec![listen.clone()];
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "console-orders".into(),
            partitions: 3,
            replication_factor: 3,
            request_id: "console-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    // A fourth broker joins the dev cluster as its own process.
    let mut extra = start_agent(&listen, 4, &dir.path().join("b4"), &[]);
    wait_live_brokers(&addrs, 4, WAIT).await;
    // A consumer group reads what was produced and commits.
    let producer =
        Producer::connect(vec![extra.address().to_owned()], ProducerConfig::default()).unwrap();
    for i in 0..6 {
        producer
            .send(
                ProducerRecord::new("console-orders", format!("o{i}").into_bytes())
                    .partition(i % 3),
            )
            .await
            .unwrap();
    }
    let coordinator = listen.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_ballast(&[
            "consume",
            "--group",
            "console-group",
            "--topic",
            "console-orders",
            "--from-beginning",
            "--max-messages",
            "6",
            "--timeout-ms",
            "30000",
            "--coordinator",
            &coordinator,
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let url = format!("http://{http}/ui");
    let page = eventually(
        "the console lists four brokers and the topic",
        WAIT,
        || async {
            let page = dom(&browser, &url).await;
            ((1..=4).all(|b| page.contains(&format!("<tr data-broker=\"{b}\">")))
                && page.contains("data-topic=\"console-orders\"")
                && page.contains(
                    "<tr data-group=\"console-group\"><td>console-group</td><td>Empty</td>",
                ))
            .then_some(page)
        },
    )
    .await;
    assert!(page.contains("cluster dev"), "{page}");
    assert!(!page.contains("<td class=\"bad\">fenced</td>"), "{page}");

    // Broker 4 stops: after the session timeout the console shows it fenced.
    extra.kill();
    eventually("the console shows broker 4 fenced", WAIT, || async {
        let page = dom(&browser, &url).await;
        page.contains("<tr data-broker=\"4\"><td>4</td><td>-</td><td class=\"bad\">fenced</td>")
            .then_some(())
    })
    .await;
}
