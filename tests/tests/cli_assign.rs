//! `ballast assign` as a user runs it: the real binary, its stdout, stderr and
//! exit code. Golden outputs come from Kafka's own test suites
//! (AdminTest, AdminRackAwareTest) and from a JDK.
//!
//! Needs the binary built first: `cargo build -p ballast-cli` (or
//! `cargo build --workspace --bins`, as `scripts/test` does).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use ballast_tests::bin_path::ballast_bin;

/// What one run of `ballast` produced.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ballast_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(ballast_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ballast");
    // The command may exit before reading (e.g. on a usage error): a broken
    // pipe here is not the test's concern.
    let _ = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for ballast");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn ballast(args: &[&str]) -> Run {
    ballast_with_stdin(args, "")
}

/// Runs `ballast args`, asserts success with nothing on stderr, returns stdout.
fn ok(args: &[&str]) -> String {
    ok_with_stdin(args, "")
}

fn ok_with_stdin(args: &[&str], stdin: &str) -> String {
    let run = ballast_with_stdin(args, stdin);
    assert_eq!(run.code, Some(0), "ballast {args:?}: {run:?}");
    assert_eq!(run.stderr, "", "ballast {args:?}");
    run.stdout
}

/// Runs `ballast args` and asserts the failure contract: a non-zero exit, no
/// panic, nothing on stdout, exactly one line on stderr containing every one
/// of `words`.
fn fails(args: &[&str], words: &[&str]) -> Run {
    fails_with_stdin(args, "", words)
}

fn fails_with_stdin(args: &[&str], stdin: &str, words: &[&str]) -> Run {
    let run = ballast_with_stdin(args, stdin);
    assert!(
        matches!(run.code, Some(c) if c != 0),
        "ballast {args:?} should fail: {run:?}"
    );
    assert!(
        !run.stderr.contains("panicked"),
        "ballast {args:?}: {run:?}"
    );
    assert_eq!(run.stdout, "", "ballast {args:?}: {run:?}");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "ballast {args:?} should print one stderr line: {run:?}"
    );
    assert!(run.stderr.ends_with('\n'), "{run:?}");
    for w in words {
        assert!(
            run.stderr.contains(w),
            "ballast {args:?}: stderr {:?} lacks {w:?}",
            run.stderr
        );
    }
    run
}

fn parse_placement(json: &str) -> BTreeMap<i32, Vec<i32>> {
    serde_json::from_str(json).expect("placement JSON")
}

// ---------------------------------------------------------------- replicas

// Kafka: AdminTest.testReplicaAssignment.
#[test]
fn replicas_kafka_admin_test_golden() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "0,1,2,3,4",
        "--partitions",
        "10",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(
        out,
        "{\"0\":[0,1,2],\"1\":[1,2,3],\"2\":[2,3,4],\"3\":[3,4,0],\"4\":[4,0,1],\
         \"5\":[0,2,3],\"6\":[1,3,4],\"7\":[2,4,0],\"8\":[3,0,1],\"9\":[4,1,2]}\n"
    );
}

// Kafka: AdminRackAwareTest.testGetRackAlternatedBrokerListAndAssignReplicasToBrokers.
#[test]
fn replicas_rack_aware_golden() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "0,1,2,3,4,5",
        "--racks",
        "rack1,rack3,rack3,rack2,rack2,rack1",
        "--partitions",
        "7",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(
        out,
        "{\"0\":[0,3,1],\"1\":[3,1,5],\"2\":[1,5,4],\"3\":[5,4,2],\"4\":[4,2,0],\
         \"5\":[2,0,3],\"6\":[0,4,2]}\n"
    );
}

#[test]
fn replicas_brokers_are_indexed_in_the_order_given() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "101,5,33",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(
        out,
        "{\"0\":[101,5,33],\"1\":[5,33,101],\"2\":[33,101,5]}\n"
    );
}

#[test]
fn replicas_seeded_is_deterministic_and_java_random() {
    let args = [
        "assign",
        "replicas",
        "--brokers",
        "10,20,30,40,50",
        "--partitions",
        "12",
        "--replication-factor",
        "3",
        "--seed",
        "42",
        "--format",
        "json",
    ];
    let first = ok(&args);
    assert_eq!(first, ok(&args));
    assert!(!first.contains("seed"), "{first}");
    let placement = parse_placement(&first);
    assert_eq!(placement.len(), 12);
    // java.util.Random(42): nextInt(5) == 0 (start index), then 3 (shift),
    // so partition 0 is led by broker index 0 and its first follower is at
    // index (0 + 1 + 3 % 4) % 5 == 4.
    assert_eq!(placement[&0], vec![10, 50, 20]);
}

#[test]
fn replicas_random_table_prints_a_seed_that_replays() {
    let base = [
        "assign",
        "replicas",
        "--brokers",
        "1,2,3,4,5,6,7",
        "--partitions",
        "20",
        "--replication-factor",
        "3",
    ];
    let table = ok(&base);
    let seed = table
        .lines()
        .find_map(|l| l.strip_prefix("seed: "))
        .unwrap_or_else(|| panic!("no seed line in\n{table}"))
        .to_owned();
    let mut replay = base.to_vec();
    replay.extend(["--seed", &seed]);
    assert_eq!(ok(&replay), table, "replaying seed {seed}");
    // The seed is also the one a json run with --seed uses.
    let mut json = replay.clone();
    json.extend(["--format", "json"]);
    let placement = parse_placement(&ok(&json));
    for (p, replicas) in &placement {
        let row = format!("{p:<9}  {}", join(replicas));
        assert!(table.contains(&row), "{row:?} not in\n{table}");
    }
}

#[test]
fn replicas_start_partition_continues_numbering() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "0,1,2,3,4",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
        "--start-partition",
        "7",
        "--format",
        "json",
    ]);
    // Kafka does not replay the shifts of partitions 0..7 (see placement.rs).
    assert_eq!(out, "{\"7\":[2,3,4],\"8\":[3,4,0],\"9\":[4,0,1]}\n");
}

#[test]
fn replicas_table_has_the_per_broker_summary() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "0,1,2,3,4",
        "--partitions",
        "10",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
    ]);
    assert_eq!(
        out,
        "\
PARTITION  REPLICAS
0          0,1,2
1          1,2,3
2          2,3,4
3          3,4,0
4          4,0,1
5          0,2,3
6          1,3,4
7          2,4,0
8          3,0,1
9          4,1,2

BROKER  LEADERS  REPLICAS
0       2        6
1       2        6
2       2        6
3       2        6
4       2        6

spread: leaders min 2 max 2, replicas min 6 max 6
"
    );
}

#[test]
fn replicas_table_with_racks_lists_brokers_in_the_order_given() {
    let out = ok(&[
        "assign",
        "replicas",
        "--brokers",
        "0,1,2,3,4,5",
        "--racks",
        "rack1,rack3,rack3,rack2,rack2,rack1",
        "--partitions",
        "7",
        "--replication-factor",
        "3",
        "--start-index",
        "0",
        "--format",
        "table",
    ]);
    let summary = "\
BROKER  RACK   LEADERS  REPLICAS
0       rack1  2        4
1       rack3  1        3
2       rack3  1        4
3       rack2  1        3
4       rack2  1        4
5       rack1  1        3

spread: leaders min 1 max 2, replicas min 3 max 4
";
    assert!(out.ends_with(summary), "{out}");
    assert!(
        out.starts_with("PARTITION  REPLICAS\n0          0,3,1\n"),
        "{out}"
    );
}

fn join(values: &[i32]) -> String {
    values
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

// ------------------------------------------------------------------- range

const ORDERS_EXAMPLE: &str = r#"{"topics":[{"name":"orders","partitions":6}],"members":[{"member_id":"c1","group_instance_id":"i1","topics":["orders"]}]}"#;

#[test]
fn range_example_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("request.json");
    std::fs::write(&path, ORDERS_EXAMPLE).expect("write request");
    let path = path.to_str().expect("UTF-8 temp path");
    assert_eq!(
        ok(&["assign", "range", "--input", path, "--format", "json"]),
        "{\"c1\":{\"orders\":[0,1,2,3,4,5]}}\n"
    );
    assert_eq!(
        ok(&["assign", "range", "--input", path]),
        "MEMBER  INSTANCE  TOPIC   PARTITIONS\nc1      i1        orders  0,1,2,3,4,5\n"
    );
}

#[test]
fn range_member_with_nothing_is_present() {
    let request = r#"{
        "topics": [{"name": "orders", "partitions": 3}],
        "members": [
            {"member_id": "c1", "group_instance_id": null, "topics": ["orders"]},
            {"member_id": "c2", "topics": ["not-in-metadata"]}
        ]
    }"#;
    assert_eq!(
        ok_with_stdin(
            &["assign", "range", "--input", "-", "--format", "json"],
            request
        ),
        "{\"c1\":{\"orders\":[0,1,2]},\"c2\":{}}\n"
    );
    assert_eq!(
        ok_with_stdin(&["assign", "range", "--input", "-"], request),
        "MEMBER  INSTANCE  TOPIC   PARTITIONS\n\
         c1      -         orders  0,1,2\n\
         c2      -         -       -\n"
    );
}

// Kafka: RangeAssignorTest.testStaticMemberRangeAssignmentPersistent.
#[test]
fn range_static_members_come_first() {
    let request = r#"{"topics":[{"name":"t","partitions":5}],"members":[
        {"member_id":"consumer-a","topics":["t"]},
        {"member_id":"consumer-z","group_instance_id":"instance-2","topics":["t"]},
        {"member_id":"consumer-b","group_instance_id":"instance-1","topics":["t"]}]}"#;
    assert_eq!(
        ok_with_stdin(
            &["assign", "range", "--input", "-", "--format", "json"],
            request
        ),
        "{\"consumer-a\":{\"t\":[4]},\"consumer-b\":{\"t\":[0,1]},\"consumer-z\":{\"t\":[2,3]}}\n"
    );
    // The table lists members in the assignor's order.
    assert_eq!(
        ok_with_stdin(&["assign", "range", "--input", "-"], request),
        "MEMBER      INSTANCE    TOPIC  PARTITIONS\n\
         consumer-b  instance-1  t      0,1\n\
         consumer-z  instance-2  t      2,3\n\
         consumer-a  -           t      4\n"
    );
}

// ------------------------------------------------------------- coordinator

#[test]
fn coordinator_partitions() {
    let c = |args: &[&str]| {
        let mut all = vec!["assign", "coordinator"];
        all.extend_from_slice(args);
        ok(&all)
    };
    assert_eq!(c(&["--group-id", "my-group"]), "12\n");
    assert_eq!(c(&["--group-id", "polygenelubricants"]), "48\n");
    assert_eq!(c(&["--group-id", "polygenelubricants", "--kafka"]), "0\n");
    assert_eq!(c(&["--group-id", "my-group", "--kafka"]), "12\n");
    assert_eq!(c(&["--group-id", ""]), "0\n");
    assert_eq!(
        c(&[
            "--group-id",
            "polygenelubricants",
            "--offsets-partitions",
            "64"
        ]),
        "0\n"
    );
    assert_eq!(c(&["--group-id=-x", "--offsets-partitions", "1"]), "0\n");
}

#[test]
fn coordinator_help_documents_the_divergence() {
    let help = ok(&["assign", "coordinator", "--help"]);
    assert!(help.contains("polygenelubricants"), "{help}");
    assert!(help.contains("--kafka"), "{help}");
}

#[test]
fn coordinator_refuses_bad_partition_counts() {
    for n in ["0", "-3"] {
        fails(
            &[
                "assign",
                "coordinator",
                "--group-id",
                "g",
                "--offsets-partitions",
                n,
            ],
            &["offsets topic partitions must be larger than 0"],
        );
    }
    fails(
        &[
            "assign",
            "coordinator",
            "--group-id",
            "g",
            "--offsets-partitions",
            "x",
        ],
        &["--offsets-partitions"],
    );
    fails(&["assign", "coordinator"], &["--group-id"]);
}

// ------------------------------------------------------------------ errors

/// `assign replicas` followed by `extra`.
fn replicas_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["assign", "replicas"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn replicas_bad_input_is_one_line_with_kafka_wording() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "--brokers",
                "1,2,3",
                "--partitions",
                "3",
                "--replication-factor",
                "4",
            ],
            &["error: Replication factor: 4 larger than available brokers: 3."],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--partitions",
                "3",
                "--replication-factor",
                "0",
            ],
            &["Replication factor must be larger than 0."],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--partitions",
                "3",
                "--replication-factor",
                "-2",
            ],
            &["Replication factor must be larger than 0."],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--partitions",
                "-1",
                "--replication-factor",
                "1",
            ],
            &["error: Number of partitions must be larger than 0."],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--partitions",
                "0",
                "--replication-factor",
                "1",
            ],
            &["Number of partitions must be larger than 0."],
        ),
        (
            &[
                "--brokers",
                "1,2,1",
                "--partitions",
                "3",
                "--replication-factor",
                "2",
            ],
            &["Duplicate broker id 1"],
        ),
        (
            &[
                "--brokers",
                "1,-2",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--brokers", "broker id -2", "non-negative"],
        ),
        (
            &[
                "--brokers",
                "-1,2",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--brokers", "non-negative"],
        ),
        (
            &[
                "--brokers",
                "1,x",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--brokers", "not an integer"],
        ),
        (
            &[
                "--brokers",
                "1,,2",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--brokers", "position 2"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "abc",
                "--replication-factor",
                "1",
            ],
            &["--partitions"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "3000000000",
                "--replication-factor",
                "1",
            ],
            &["--partitions", "3000000000"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1.5",
            ],
            &["--replication-factor"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1",
                "--start-index",
                "-1",
            ],
            &["--start-index", "negative"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1",
                "--start-partition",
                "-1",
            ],
            &["--start-partition", "negative"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1",
                "--start-partition",
                "2147483647",
            ],
            &["would pass the largest partition id 2147483647"],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--racks",
                "a,b",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--racks", "got 2 for 3 brokers"],
        ),
        (
            &[
                "--brokers",
                "1,2,3",
                "--racks",
                "a,,b",
                "--partitions",
                "3",
                "--replication-factor",
                "2",
            ],
            &["Not all brokers have rack information for replica rack aware assignment."],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--racks",
                "a, b",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ],
            &["--racks", "whitespace"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1",
                "--start-index",
                "0",
                "--seed",
                "1",
            ],
            &["--seed", "--start-index"],
        ),
        (
            &[
                "--brokers",
                "1,2",
                "--partitions",
                "2",
                "--replication-factor",
                "1",
                "--format",
                "xml",
            ],
            &["--format", "xml"],
        ),
        (
            &["--brokers", "1,2", "--partitions", "2"],
            &["--replication-factor"],
        ),
    ];
    for (args, words) in cases {
        fails(&replicas_args(args), words);
    }
}

#[test]
fn range_bad_input_is_one_line() {
    let range = ["assign", "range", "--input", "-", "--format", "json"];
    // Malformed JSON: serde's line and column.
    fails_with_stdin(
        &range,
        "{\"topics\": [],\n \"members\": [}",
        &["malformed range request", "line 2 column 14"],
    );
    fails_with_stdin(&range, "", &["malformed range request", "line 1 column 0"]);
    fails_with_stdin(
        &range,
        r#"{"topics":[],"members":[],"extra":true}"#,
        &["unknown field `extra`"],
    );
    fails_with_stdin(
        &range,
        r#"{"topics":[{"name":"t","partitions":-1}],"members":[]}"#,
        &["topic \"t\"", "must not be negative"],
    );
    fails_with_stdin(
        &range,
        r#"{"topics":[{"name":"t","partitions":2147483648}],"members":[]}"#,
        &["2147483648", "i32"],
    );
    fails_with_stdin(
        &range,
        r#"{"topics":[{"name":"t","partitions":"6"}],"members":[]}"#,
        &["invalid type"],
    );
    fails_with_stdin(
        &range,
        r#"{"topics":[],"members":[{"member_id":"a","topics":[]},{"member_id":"a","topics":[]}]}"#,
        &["Duplicate member id \"a\""],
    );
    fails_with_stdin(
        &range,
        r#"{"topics":[{"name":"t","partitions":1},{"name":"t","partitions":2}],"members":[]}"#,
        &["Duplicate topic \"t\""],
    );
    fails(
        &["assign", "range", "--input", "/nonexistent/request.json"],
        &["cannot read /nonexistent/request.json"],
    );
    fails(&["assign", "range"], &["--input"]);
}

#[test]
fn unknown_commands_are_one_line() {
    fails(&["assign", "bogus"], &["bogus"]);
    fails(&["bogus"], &["bogus"]);
    fails(
        &["assign", "replicas", "--brokers", "1", "--nope"],
        &["--nope"],
    );
}

#[test]
fn usage_errors_exit_2_and_assignor_errors_exit_1() {
    let usage = ballast(&["assign", "coordinator"]);
    assert_eq!(usage.code, Some(2), "{usage:?}");
    let refused = ballast(&[
        "assign",
        "coordinator",
        "--group-id",
        "g",
        "--offsets-partitions",
        "0",
    ]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
}
