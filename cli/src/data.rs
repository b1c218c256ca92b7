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
//! Two deliberate exceptions to the CLI's "commands return their output"
//! rule: `consume` streams records to stdout as they arrive (it may run
//! until Ctrl-C), and both commands end with one summary line on stderr
//! (`produced N records`, `consumed N records`) so stdout carries only
//! records. Failures still come back as one `error: ...` line from main.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ballast_client::{
    Acks, AdminClient, AdminOptions, ConsumeError, Consumer, ConsumerConfig, ConsumerRecord,
    DeliveryFuture, MetadataError, OffsetReset, ProduceError, Producer, ProducerConfig,
    ProducerRecord, StartPosition,
};
use clap::Args;
use tokio::io::AsyncBufReadExt;

/// How long the commands wait for the topic to appear in the agents'
/// metadata before saying it does not exist.
const TOPIC_WAIT: Duration = Duration::from_secs(5);

/// Records `produce` has sent and not yet seen acknowledged, at most.
const MAX_PENDING: usize = 10_000;

/// Where the agents are.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
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
    /// Topic to read.
    #[arg(long)]
    topic: String,

    /// Start at the beginning of each partition (default: only new
    /// records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,

    /// Read only this partition.
    #[arg(long, value_name = "P")]
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

    /// Print `partition:offset` first (tab-separated).
    #[arg(long)]
    print_offset: bool,

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

/// One output line for a record: `[partition:offset\t][key\t]value\n`,
/// `null` for a missing key or value; bytes as they are.
pub fn render(r: &ConsumerRecord, print_offset: bool, print_key: bool) -> Vec<u8> {
    let mut line = Vec::new();
    if print_offset {
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
async fn bootstrap(args: &BootstrapArgs) -> Result<Vec<String>> {
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

fn runtime() -> Result<tokio::runtime::Runtime> {
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
        let count = match consumer.partitions_for(&args.topic).await {
            Ok(n) => n,
            Err(ConsumeError::Metadata(e)) => return Err(topic_not_found(e, &args.topic)),
            Err(e) => return Err(e.into()),
        };
        check_partition(&args.topic, args.partition, count)?;
        let partitions: Vec<i32> = match args.partition {
            Some(p) => vec![p],
            None => (0..count).collect(),
        };
        consumer.assign(&args.topic, partitions.into_iter().map(|p| (p, start)));

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
                let written = out.write_all(&render(r, args.print_offset, args.print_key));
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
        assert_eq!(render(&r, false, false), b"v\n");
        assert_eq!(render(&r, false, true), b"k\tv\n");
        assert_eq!(render(&r, true, true), b"3:42\tk\tv\n");
        assert_eq!(
            render(&record(None, None), true, true),
            b"3:42\tnull\tnull\n"
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
