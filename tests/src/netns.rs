//! Network partitions for fault tests: a process runs in its own network
//! namespace, joined to the test's namespace by a veth pair with a /30 of
//! its own; taking the test side of the pair down isolates it from every
//! other process (a partition), bringing it up heals it. Needs `ip netns`
//! (iproute2, root), which this machine and CI have; without it
//! [`Isolated::create`] fails saying so (tests never skip).
//!
//! Routes: inside a namespace, the whole address pool ([`POOL`]) goes via
//! the test side's address, so a namespaced process reaches every address
//! of the test's namespace (the test sides of all pairs, which is where
//! test processes listen) and, through the test's namespace, the processes
//! of every other namespace: the test side forwards what enters from the
//! namespace (`net.ipv4.conf.<veth>.forwarding`, that interface only). Two
//! policy rules keep that forwarding inside the pool's links: a packet from
//! the namespace may use any route of the main table except the default
//! one, and is dropped otherwise (so while a peer is cut off, its packets
//! are dropped here instead of leaving by the machine's default route).
//!
//! Owns the namespace, the veth pair, the sysctl (it goes with the
//! interface) and the two rules; all are removed when the handle drops,
//! also on panic. Must never forward anything outside [`POOL`].

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// One namespace and its link to the test's namespace.
#[derive(Debug)]
pub struct Isolated {
    ns: String,
    host_if: String,
    /// The test side's address (processes of the test listen on it).
    pub host_ip: String,
    /// The isolated side's address.
    pub ns_ip: String,
}

/// Every namespace's /30 lies in this /12 (see [`Isolated::create`]).
pub const POOL: &str = "10.64.0.0/12";
/// Preference of the policy rule letting forwarded packets use the main
/// table's routes but its default one; the dropping rule comes next.
const RULE_PREF: u32 = 32_000;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed (network namespaces need root and iproute2): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn rule_command<'a>(verb: &'a str, rule: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["rule", verb];
    args.extend(rule.iter().map(String::as_str));
    args
}

impl Isolated {
    /// A fresh namespace with loopback up and a veth pair to this one.
    pub fn create() -> anyhow::Result<Isolated> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // A /30 per namespace, from the pid and a counter (up to 4
        // namespaces per test process): POOL holds 2^18 of them; .1 is this
        // side, .2 the namespace's.
        let k = std::process::id() % 65_536 * 4 + NEXT.fetch_add(1, Ordering::Relaxed) % 4;
        let net = |host: u32| {
            format!(
                "10.{}.{}.{}",
                64 + (k >> 14),
                (k >> 6) & 255,
                (k & 63) * 4 + host
            )
        };
        let (host_ip, ns_ip) = (net(1), net(2));
        let ns = format!("ballast-{k}");
        let host_if = format!("bh{k}");
        let ns_if = format!("bn{k}");
        let me = Isolated {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        // Left over by a killed test process that had this pid.
        me.remove();
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "route", "add", POOL, "via", &host_ip])?;
        let forwarding = format!("/proc/sys/net/ipv4/conf/{host_if}/forwarding");
        std::fs::write(&forwarding, "1").with_context(|| format!("enable {forwarding}"))?;
        for rule in me.rules() {
            ip(&rule_command("add", &rule))?;
        }
        Ok(me)
    }

    /// The policy rules of this namespace's forwarding (see the module
    /// doc), as `ip rule` arguments after the verb.
    fn rules(&self) -> [Vec<String>; 2] {
        let head = |pref: u32| -> Vec<String> {
            vec![
                "pref".into(),
                pref.to_string(),
                "iif".into(),
                self.host_if.clone(),
            ]
        };
        let mut lookup = head(RULE_PREF);
        lookup.extend(["lookup", "main", "suppress_prefixlength", "0"].map(String::from));
        let mut drop = head(RULE_PREF + 1);
        drop.push("blackhole".into());
        [lookup, drop]
    }

    /// Removes whatever of this namespace exists (errors ignored).
    fn remove(&self) {
        for rule in self.rules() {
            let _ = ip(&rule_command("del", &rule));
        }
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn wrapper(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.ns]
    }

    /// Partition: nothing passes between the namespace and the test's.
    pub fn cut(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Heal the partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.remove();
    }
}
