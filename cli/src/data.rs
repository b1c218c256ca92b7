//! The data commands: `ballast produce` (one record per stdin line) and
//! `ballast consume` (print records), like Kafka's console producer and
//! consumer.
//!
//! Owns their flags, finding the agents (`--bootstrap`, or else the
//! brokers the coordinator lists), turning stdin lines into records and
//! records into output lines ([`parse_line`] and [`render`], pure and unit
//! tested here). Partitioning, batching, retries and fetching are the
//! client's business.
//!
//! `ballast consume --group G --topic T [--topic T2 ...]` joins consumer
//! group G instead of reading every partition: the group's coordinator
//! assigns partitions, each starts at the group's committed offset (or, with
//! none, at the beginning with --from-beginning, else at the end), and
//! positions are committed every --auto-commit-interval-ms, before a
//! partition is released and on exit (or, with --no-auto-commit, after
//! every printed batch). In group mode --print-offset prints
//! `topic:partition:offset` (several topics may be read). Ctrl-C and
//! SIGTERM commit and leave the group cleanly. `--events FILE` appends one
//! JSON line per membership event, flushed at once ([`event_line`]):
//!
//! ```text
//! {"event":"assigned","member_epoch":3,"member_id":"...","partitions":[["t",0],["t",3]],"ts_us":1714564800000000}
//! {"event":"committed","member_epoch":3,"member_id":"...","offsets":[["t",0,123]],"partitions":[["t",0]],"ts_us":...}
//! ```
//!
//! `revoked` and `lost` lines are written before the release is reported to
//! the coordinator (and before any rejoin), `assigned` lines after the
//! coordinator's answer arrived and before any record of those partitions
//! is printed, so ownership intervals read from several processes' files
//! are sound (`lost` excepted: the coordinator may have moved the
//! partitions on before the member learns it lost them).
//!
//! Two deliberate exceptions to the CLI's "commands return their output"
//! rule: `consume` streams records to stdout as they arrive (it may run
//! until Ctrl-C), and both commands end with one summary line on stderr
//! (`produced N records`, `consumed N records`) so stdout carries only
//! records. Failures still come back as one `error: ...` line from main.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ballast_client::{
    Acks, AdminClient, AdminOptions, CommitEvent, ConsumeError, Consumer, ConsumerConfig,
    ConsumerRecord, DeliveryFuture, GroupConfig, GroupConsumer, GroupError, MetadataError,
    OffsetReset, ProduceError, Producer, ProducerConfig, ProducerRecord, RebalanceEvent,
    RebalanceListener, StartPosition, TopicPartition,
};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// How long the commands wait for the topic to appear in the agents'
/// metadata before saying it does not exist.
const TOPIC_WAIT: Duration = Duration::from_secs(5);

/// Records `produce` has sent and not yet seen acknowledged, at most.
const MAX_PENDING: usize = 10_000;

/// Where the agents are.
#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    /// Agent addresses (host:port of their Data service), comma-separated.
    /// Default: the live brokers the coordinator lists.
    #[arg(
        long,
        env = "BALLAST_BOOTSTRAP",
        value_name = "ADDR,...",
        value_delimiter = ','
    )]
    bootstrap: Vec<String>,

    /// Coordinator addresses (host:port), comma-separated; asked for the
    /// brokers when --bootstrap is not given.
    #[arg(
        long,
        env = "BALLAST_COORDINATOR",
        value_name = "ADDR,...",
        value_delimiter = ',',
        default_value = "127.0.0.1:9410"
    )]
    coordinator: Vec<String>,
}

/// `ballast produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    #[arg(long)]
    topic: String,

    /// Key for every record (default: none, records spread by the sticky
    /// partitioner).
    #[arg(long, conflicts_with = "parse_key")]
    key: Option<String>,

    /// Each line is KEY<separator>VALUE.
    #[arg(long)]
    parse_key: bool,

    /// Separator between key and value with --parse-key.
    #[arg(long, default_value = ":", value_name = "SEP")]
    key_separator: String,

    /// Partition for every record (default: murmur2 of the key, as Kafka).
    #[arg(long, value_name = "P")]
    partition: Option<i32>,

    /// Acknowledgement: 0 (none), 1 (leader), all (every in-sync replica).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,

    /// How long a batch waits for more records.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    linger: Duration,

    /// Batch size in bytes.
    #[arg(long, default_value_t = 16_384, value_name = "BYTES")]
    batch_size: usize,

    /// A record not acknowledged within this fails.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    delivery_timeout: Duration,

    #[command(flatten)]
    connect: BootstrapArgs,
}

/// `ballast consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read; with --group, repeat for several.
    #[arg(long = "topic", required = true, value_name = "TOPIC")]
    topics: Vec<String>,

    /// Start at the beginning of each partition (default: only new
    /// records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,

    /// Read only this partition.
    #[arg(long, value_name = "P", conflicts_with = "group")]
    partition: Option<i32>,

    /// Start offset in --partition: a number, `earliest` or `latest`. A
    /// number outside the log is an error.
    #[arg(long, requires = "partition", value_parser = parse_offset, value_name = "O")]
    offset: Option<StartPosition>,

    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,

    /// Exit after this many milliseconds without a record.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,

    /// Print the key before the value (tab-separated; `null` for none).
    #[arg(long)]
    print_key: bool,

    /// Print `partition:offset` first (tab-separated); with --group
    /// `topic:partition:offset`.
    #[arg(long)]
    print_offset: bool,

    /// Join this consumer group: the group's coordinator assigns the
    /// partitions, and offsets are committed to it.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    /// Static membership: a restart with the same id within the session
    /// timeout takes this member's place without a rebalance.
    #[arg(long, requires = "group", value_name = "ID")]
    instance_id: Option<String>,

    /// The coordinator drops the member after this long without a
    /// heartbeat.
    #[arg(long, requires = "group", value_name = "MS", default_value_t = 45_000)]
    session_timeout_ms: u64,

    /// Commit after every printed batch instead of every
    /// --auto-commit-interval-ms.
    #[arg(long, requires = "group")]
    no_auto_commit: bool,

    /// How often positions are committed.
    #[arg(
        long,
        requires = "group",
        conflicts_with = "no_auto_commit",
        value_name = "MS",
        default_value_t = 5_000
    )]
    auto_commit_interval_ms: u64,

    /// Append one JSON line per membership event (assigned, revoked, lost,
    /// committed) to this file, flushed at once.
    #[arg(long, requires = "group", value_name = "FILE")]
    events: Option<PathBuf>,

    #[command(flatten)]
    connect: BootstrapArgs,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(format!("{s:?} is not 0, 1 or all")),
    }
}

fn parse_offset(s: &str) -> Result<StartPosition, String> {
    match s {
        "earliest" => Ok(StartPosition::Earliest),
        "latest" => Ok(StartPosition::Latest),
        n => match n.parse::<i64>() {
            Ok(o) if o >= 0 => Ok(StartPosition::Offset(o)),
            _ => Err(format!(
                "{s:?} is not an offset (a number >= 0, earliest or latest)"
            )),
        },
    }
}

/// How a stdin line becomes key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    /// No key.
    None,
    /// The same key for every line.
    Fixed(Vec<u8>),
    /// `KEY<separator>VALUE`, split at the first separator.
    Parse(Vec<u8>),
}

/// Key and value of one stdin line (`line` without its line ending).
pub fn parse_line(line: &[u8], mode: &KeyMode) -> Result<(Option<Vec<u8>>, Vec<u8>), String> {
    match mode {
        KeyMode::None => Ok((None, line.to_vec())),
        KeyMode::Fixed(k) => Ok((Some(k.clone()), line.to_vec())),
        KeyMode::Parse(sep) => {
            let at = (!sep.is_empty())
                .then(|| line.windows(sep.len()).position(|w| w == sep.as_slice()))
                .flatten();
            match at {
                Some(i) => Ok((Some(line[..i].to_vec()), line[i + sep.len()..].to_vec())),
                None => Err(format!(
                    "no key separator {:?} in the line",
                    String::from_utf8_lossy(sep)
                )),
            }
        }
    }
}

/// A line without its `\n` or `\r\n`.
fn trim_line_ending(mut line: &[u8]) -> &[u8] {
    if let Some(l) = line.strip_suffix(b"\n") {
        line = l;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
    }
    line
}

/// One output line for a record: `[partition:offset\t][key\t]value\n`
/// (`[topic:partition:offset\t]` with `with_topic`), `null` for a missing
/// key or value; bytes as they are.
pub fn render(
    r: &ConsumerRecord,
    print_offset: bool,
    print_key: bool,
    with_topic: bool,
) -> Vec<u8> {
    let mut line = Vec::new();
    if print_offset && with_topic {
        line.extend_from_slice(format!("{}:{}:{}\t", r.topic, r.partition, r.offset).as_bytes());
    } else if print_offset {
        line.extend_from_slice(format!("{}:{}\t", r.partition, r.offset).as_bytes());
    }
    if print_key {
        line.extend_from_slice(r.key.as_deref().unwrap_or(b"null"));
        line.push(b'\t');
    }
    line.extend_from_slice(r.value.as_deref().unwrap_or(b"null"));
    line.push(b'\n');
    line
}

/// The agents to bootstrap from: `--bootstrap`, or the `client` endpoints
/// of the live brokers the coordinator lists.
pub(crate) async fn bootstrap(args: &BootstrapArgs) -> Result<Vec<String>> {
    let given = nonblank(&args.bootstrap);
    if !given.is_empty() {
        return Ok(given);
    }
    let coordinators = nonblank(&args.coordinator);
    if coordinators.is_empty() {
        bail!("--coordinator: no address given (or give --bootstrap)");
    }
    let admin = AdminClient::connect(coordinators, AdminOptions::default())?;
    let brokers = admin
        .list_brokers()
        .await
        .context("finding the agents (give --bootstrap to skip the coordinator)")?;
    let addresses: Vec<String> = brokers
        .iter()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            b.endpoints
                .iter()
                .find(|e| e.name == "client")
                .or(b.endpoints.first())
                .map(|e| e.address.clone())
        })
        .filter(|a| !a.is_empty())
        .collect();
    if addresses.is_empty() {
        bail!(
            "no live broker is registered with the coordinator; start agents or give --bootstrap"
        );
    }
    Ok(addresses)
}

fn nonblank(given: &[String]) -> Vec<String> {
    given
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Checks that `partition` (if given) exists in a topic of `count`.
fn check_partition(topic: &str, partition: Option<i32>, count: i32) -> Result<()> {
    if let Some(p) = partition
        && !(0..count).contains(&p)
    {
        bail!(
            "--partition {p}: topic {topic} has partitions 0..{}",
            count - 1
        );
    }
    Ok(())
}

/// Tallies acknowledgements.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_error: Option<ProduceError>,
}

impl Tally {
    fn add(&mut self, result: Result<ballast_client::RecordMetadata, ProduceError>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// `ballast produce`.
pub fn produce(args: ProduceArgs) -> Result<String> {
    let mode = match (&args.key, args.parse_key) {
        (Some(k), _) => KeyMode::Fixed(k.as_bytes().to_vec()),
        (None, true) => {
            if args.key_separator.is_empty() {
                bail!("--key-separator: must not be empty");
            }
            KeyMode::Parse(args.key_separator.as_bytes().to_vec())
        }
        (None, false) => KeyMode::None,
    };
    runtime()?.block_on(async {
        let bootstrap = bootstrap(&args.connect).await?;
        let config = ProducerConfig {
            acks: args.acks,
            linger: args.linger,
            batch_size_bytes: args.batch_size.max(1),
            delivery_timeout: args.delivery_timeout,
            metadata_timeout: TOPIC_WAIT,
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(bootstrap, config)?;
        let count = match producer.partitions_for(&args.topic).await {
            Ok(n) => n,
            Err(ProduceError::Metadata(e)) => return Err(topic_not_found(e, &args.topic)),
            Err(e) => return Err(e.into()),
        };
        check_partition(&args.topic, args.partition, count)?;

        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
        let mut tally = Tally::default();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut bad_line = None;
        loop {
            buf.clear();
            let n = stdin
                .read_until(b'\n', &mut buf)
                .await
                .context("reading stdin")?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let (key, value) = match parse_line(trim_line_ending(&buf), &mode) {
                Ok(kv) => kv,
                Err(e) => {
                    bad_line = Some(format!("line {line_no}: {e}"));
                    break;
                }
            };
            let mut record = ProducerRecord::new(args.topic.clone(), value);
            record.key = key.map(Into::into);
            record.partition = args.partition;
            producer.ready().await;
            pending.push_back(producer.send(record));
            while pending.len() > MAX_PENDING {
                if let Some(f) = pending.pop_front() {
                    tally.add(f.await);
                }
            }
        }
        for f in pending {
            tally.add(f.await);
        }
        producer.close().await;
        let total = tally.ok + tally.failed;
        if let Some(e) = bad_line {
            bail!(
                "{e} (the {} records before it were sent: {} produced)",
                total,
                tally.ok
            );
        }
        if let Some(e) = tally.first_error {
            bail!(
                "{} of {total} records were not produced; first error: {e}",
                tally.failed
            );
        }
        eprintln!("produced {} records", tally.ok);
        Ok(String::new())
    })
}

/// A metadata failure while looking the topic up, with what to do when
/// the topic does not exist.
fn topic_not_found(e: MetadataError, topic: &str) -> anyhow::Error {
    match e {
        MetadataError::UnknownTopic { .. } => anyhow::anyhow!(
            "{e}; create it with `ballast topics create {topic} --partitions N --replication-factor R`"
        ),
        other => other.into(),
    }
}

/// `ballast consume`.
pub fn consume(args: ConsumeArgs) -> Result<String> {
    if let Some(group) = args.group.clone() {
        return consume_group(args, group);
    }
    let topic = match args.topics.as_slice() {
        [t] => t.clone(),
        _ => bail!("--topic: give exactly one topic without --group"),
    };
    runtime()?.block_on(async {
        let bootstrap = bootstrap(&args.connect).await?;
        let (start, reset) = match (args.offset, args.from_beginning) {
            (Some(StartPosition::Offset(o)), _) => (StartPosition::Offset(o), OffsetReset::Error),
            (Some(s), _) => (s, OffsetReset::Latest),
            (None, true) => (StartPosition::Earliest, OffsetReset::Earliest),
            (None, false) => (StartPosition::Latest, OffsetReset::Latest),
        };
        let config = ConsumerConfig {
            auto_offset_reset: reset,
            metadata_timeout: TOPIC_WAIT,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::connect(bootstrap, config)?;
        let count = match consumer.partitions_for(&topic).await {
            Ok(n) => n,
            Err(ConsumeError::Metadata(e)) => return Err(topic_not_found(e, &topic)),
            Err(e) => return Err(e.into()),
        };
        check_partition(&topic, args.partition, count)?;
        let partitions: Vec<i32> = match args.partition {
            Some(p) => vec![p],
            None => (0..count).collect(),
        };
        consumer.assign(&topic, partitions.into_iter().map(|p| (p, start)));

        let idle_limit = args.timeout_ms.map(Duration::from_millis);
        let poll_wait =
            idle_limit.map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1)));
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let mut consumed = 0u64;
        let mut last_record = tokio::time::Instant::now();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        'outer: loop {
            if args.max_messages.is_some_and(|m| consumed >= m) {
                break;
            }
            let records = tokio::select! {
                r = consumer.poll(poll_wait) => r.map_err(|e: ConsumeError| anyhow::anyhow!(e))?,
                _ = &mut ctrl_c => break,
            };
            if records.is_empty() {
                if idle_limit.is_some_and(|t| last_record.elapsed() >= t) {
                    break;
                }
                continue;
            }
            last_record = tokio::time::Instant::now();
            for r in &records {
                if args.max_messages.is_some_and(|m| consumed >= m) {
                    break;
                }
                let written = out.write_all(&render(r, args.print_offset, args.print_key, false));
                if stop_on_write_error(written)? {
                    break 'outer;
                }
                consumed += 1;
            }
            if stop_on_write_error(out.flush())? {
                break;
            }
        }
        if stop_on_write_error(out.flush())? {
            return Ok(String::new());
        }
        eprintln!("consumed {consumed} records");
        Ok(String::new())
    })
}

/// `ballast consume --group`: see the module documentation.
fn consume_group(args: ConsumeArgs, group: String) -> Result<String> {
    runtime()?.block_on(async {
        let bootstrap = bootstrap(&args.connect).await?;
        let reset = if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        };
        let config = ConsumerConfig {
            auto_offset_reset: reset,
            metadata_timeout: TOPIC_WAIT,
            ..ConsumerConfig::default()
        };
        let mut group_config = GroupConfig::new(group);
        group_config.instance_id = args.instance_id.clone();
        group_config.session_timeout = Duration::from_millis(args.session_timeout_ms);
        group_config.auto_commit = !args.no_auto_commit;
        group_config.auto_commit_interval = Duration::from_millis(args.auto_commit_interval_ms);
        group_config.client_id = "ballast-cli".to_owned();
        let mut consumer = GroupConsumer::connect(bootstrap, config, group_config)?;
        for topic in &args.topics {
            match consumer.consumer().partitions_for(topic).await {
                Ok(_) => {}
                Err(ConsumeError::Metadata(e)) => return Err(topic_not_found(e, topic)),
                Err(e) => return Err(e.into()),
            }
        }
        let log_error = Arc::new(Mutex::new(None));
        if let Some(path) = &args.events {
            let log = EventLog::open(path, Arc::clone(&log_error))?;
            consumer.set_listener(Box::new(log));
        }
        consumer.subscribe(&args.topics)?;
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(wait_for_stop(Arc::clone(&stop)));

        let idle_limit = args.timeout_ms.map(Duration::from_millis);
        // Short polls: a stop request is seen within one (polls are never
        // cancelled: see GroupConsumer::poll).
        let poll_wait = idle_limit.map_or(Duration::from_millis(500), |t| {
            t.min(Duration::from_millis(500))
        });
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let mut consumed = 0u64;
        let mut last_record = tokio::time::Instant::now();
        let mut failure: Option<anyhow::Error> = None;
        let mut closed_stdout = false;
        while !stop.load(Ordering::SeqCst) && args.max_messages.is_none_or(|m| consumed < m) {
            let records = match consumer.poll(poll_wait).await {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            };
            if let Some(e) = take_log_error(&log_error) {
                failure = Some(e);
                break;
            }
            if records.is_empty() {
                if idle_limit.is_some_and(|t| last_record.elapsed() >= t) {
                    break;
                }
                continue;
            }
            last_record = tokio::time::Instant::now();
            let mut printed = 0;
            for r in &records {
                if args.max_messages.is_some_and(|m| consumed >= m) {
                    break;
                }
                let written = out.write_all(&render(r, args.print_offset, args.print_key, true));
                match stop_on_write_error(written) {
                    Ok(false) => {}
                    Ok(true) => closed_stdout = true,
                    Err(e) => failure = Some(e),
                }
                if closed_stdout || failure.is_some() {
                    break;
                }
                consumed += 1;
                printed += 1;
            }
            // Records handed out but not printed must not be committed:
            // move those partitions back to their first unprinted record.
            for (tp, offset) in first_unprinted(&records[printed..]) {
                if let Err(e) = consumer.seek(&tp, offset, None) {
                    failure.get_or_insert(e.into());
                }
            }
            match stop_on_write_error(out.flush()) {
                Ok(false) => {}
                Ok(true) => closed_stdout = true,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            if closed_stdout || failure.is_some() {
                break;
            }
            if args.no_auto_commit
                && let Err(e) = consumer.commit_sync().await
            {
                eprintln!("warning: commit failed: {e}");
            }
        }
        let closed = consumer.close().await;
        let log = take_log_error(&log_error);
        if let Some(e) = failure.or(log) {
            return Err(e);
        }
        if let Err(e) = closed {
            eprintln!("warning: {e}");
        }
        if !closed_stdout {
            eprintln!("consumed {consumed} records");
        }
        Ok(String::new())
    })
}

/// Per partition, the offset of its first record in `unprinted`.
fn first_unprinted(unprinted: &[ConsumerRecord]) -> BTreeMap<TopicPartition, i64> {
    let mut first = BTreeMap::new();
    for r in unprinted {
        first
            .entry(TopicPartition::new(r.topic.clone(), r.partition))
            .or_insert(r.offset);
    }
    first
}

/// Sets `stop` on Ctrl-C or SIGTERM.
async fn wait_for_stop(stop: Arc<AtomicBool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.store(true, Ordering::SeqCst);
}

fn take_log_error(slot: &Mutex<Option<String>>) -> Option<anyhow::Error> {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .map(|e| anyhow::anyhow!(e))
}

/// The `--events` file: one JSON line per membership event, each written
/// with one `write` and flushed at once. The first write error is kept for
/// the command to fail with.
struct EventLog {
    file: std::fs::File,
    path: PathBuf,
    error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.path)
            .finish()
    }
}

impl EventLog {
    fn open(path: &Path, error: Arc<Mutex<Option<String>>>) -> Result<EventLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--events: cannot open {}", path.display()))?;
        Ok(EventLog {
            file,
            path: path.to_owned(),
            error,
        })
    }

    fn write(&mut self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush());
        if let Err(e) = written {
            let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert_with(|| {
                format!("--events: cannot write {}: {e}", self.path.display())
            });
        }
    }
}

impl RebalanceListener for EventLog {
    fn on_assigned(&mut self, event: &RebalanceEvent) {
        self.write(&event_line("assigned", event, now_us()));
    }

    fn on_revoked(&mut self, event: &RebalanceEvent) {
        self.write(&event_line("revoked", event, now_us()));
    }

    fn on_lost(&mut self, event: &RebalanceEvent) {
        self.write(&event_line("lost", event, now_us()));
    }

    fn on_committed(&mut self, event: &CommitEvent) {
        self.write(&commit_line(event, now_us()));
    }

    fn on_commit_failed(&mut self, error: &GroupError) {
        eprintln!("warning: commit failed: {error}");
    }
}

/// Wall-clock microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One `--events` line for an assigned, revoked or lost event.
pub fn event_line(kind: &str, event: &RebalanceEvent, ts_us: u64) -> Value {
    let partitions: Vec<Value> = event
        .partitions
        .iter()
        .map(|tp| json!([tp.topic, tp.partition]))
        .collect();
    json!({
        "ts_us": ts_us,
        "event": kind,
        "member_id": event.member_id,
        "member_epoch": event.member_epoch,
        "partitions": partitions,
    })
}

/// One `--events` line for a commit: `partitions` and `offsets`
/// (`[topic, partition, next offset]`).
pub fn commit_line(event: &CommitEvent, ts_us: u64) -> Value {
    let partitions: Vec<Value> = event
        .offsets
        .iter()
        .map(|(tp, _)| json!([tp.topic, tp.partition]))
        .collect();
    let offsets: Vec<Value> = event
        .offsets
        .iter()
        .map(|(tp, o)| json!([tp.topic, tp.partition, o]))
        .collect();
    json!({
        "ts_us": ts_us,
        "event": "committed",
        "member_id": event.member_id,
        "member_epoch": event.member_epoch,
        "partitions": partitions,
        "offsets": offsets,
    })
}

/// A closed stdout (`ballast consume | head`) ends the command quietly
/// (true); any other write error fails it.
fn stop_on_write_error(result: std::io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("cannot write output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, value: Option<&str>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 3,
            offset: 42,
            timestamp: 0,
            key: key.map(|k| k.as_bytes().to_vec().into()),
            value: value.map(|v| v.as_bytes().to_vec().into()),
            headers: vec![],
            leader_epoch: 1,
        }
    }

    #[test]
    fn lines_become_keys_and_values() {
        assert_eq!(
            parse_line(b"hello", &KeyMode::None),
            Ok((None, b"hello".to_vec()))
        );
        assert_eq!(
            parse_line(b"hello", &KeyMode::Fixed(b"k".to_vec())),
            Ok((Some(b"k".to_vec()), b"hello".to_vec()))
        );
        let colon = KeyMode::Parse(b":".to_vec());
        assert_eq!(
            parse_line(b"user-1:a:b", &colon),
            Ok((Some(b"user-1".to_vec()), b"a:b".to_vec()))
        );
        assert_eq!(parse_line(b":v", &colon), Ok((Some(vec![]), b"v".to_vec())));
        assert_eq!(
            parse_line(b"novalue", &colon),
            Err("no key separator \":\" in the line".into())
        );
        let multi = KeyMode::Parse(b"=>".to_vec());
        assert_eq!(
            parse_line(b"k=>v", &multi),
            Ok((Some(b"k".to_vec()), b"v".to_vec()))
        );
        assert_eq!(trim_line_ending(b"a\r\n"), b"a");
        assert_eq!(trim_line_ending(b"a\n"), b"a");
        assert_eq!(trim_line_ending(b"a"), b"a");
        assert_eq!(trim_line_ending(b"a\r"), b"a\r");
        assert_eq!(trim_line_ending(b"\n"), b"");
    }

    #[test]
    fn records_render_as_lines() {
        let r = record(Some("k"), Some("v"));
        assert_eq!(render(&r, false, false, false), b"v\n");
        assert_eq!(render(&r, false, true, false), b"k\tv\n");
        assert_eq!(render(&r, true, true, false), b"3:42\tk\tv\n");
        assert_eq!(render(&r, true, false, true), b"t:3:42\tv\n");
        assert_eq!(render(&r, false, false, true), b"v\n");
        assert_eq!(
            render(&record(None, None), true, true, false),
            b"3:42\tnull\tnull\n"
        );
    }

    #[test]
    fn event_lines() {
        let event = RebalanceEvent {
            partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 3)],
            member_id: "m".into(),
            member_epoch: 5,
        };
        assert_eq!(
            event_line("assigned", &event, 17).to_string(),
            r#"{"event":"assigned","member_epoch":5,"member_id":"m","partitions":[["t",0],["t",3]],"ts_us":17}"#
        );
        let commit = CommitEvent {
            offsets: vec![(TopicPartition::new("t", 0), 123)],
            member_id: "m".into(),
            member_epoch: 5,
        };
        assert_eq!(
            commit_line(&commit, 18).to_string(),
            r#"{"event":"committed","member_epoch":5,"member_id":"m","offsets":[["t",0,123]],"partitions":[["t",0]],"ts_us":18}"#
        );
        let mut r = record(None, Some("v"));
        let first = first_unprinted(&[r.clone(), {
            r.offset = 43;
            r
        }]);
        assert_eq!(
            first.into_iter().collect::<Vec<_>>(),
            [(TopicPartition::new("t", 3), 42)]
        );
    }

    #[test]
    fn flag_values() {
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("-1"), Ok(Acks::All));
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert_eq!(parse_acks("1"), Ok(Acks::Leader));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_offset("earliest"), Ok(StartPosition::Earliest));
        assert_eq!(parse_offset("latest"), Ok(StartPosition::Latest));
        assert_eq!(parse_offset("17"), Ok(StartPosition::Offset(17)));
        assert!(parse_offset("-3").is_err());
        assert!(check_partition("t", Some(6), 6).is_err());
        assert!(check_partition("t", Some(5), 6).is_ok());
        assert!(check_partition("t", None, 6).is_ok());
    }
}
