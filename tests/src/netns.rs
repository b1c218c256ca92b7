//! Network partitions for fault tests: a process runs in its own network
//! namespace, joined to the test's namespace by a veth pair with a /30 of
//! its own; taking the test side of the pair down isolates it from every
//! other process (a partition), bringing it up heals it. Needs `ip netns`
//! (iproute2, root), which this machine and CI have; without it
//! [`Isolated::create`] fails saying so (tests never skip).

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

impl Isolated {
    /// A fresh namespace with loopback up and a veth pair to this one.
    pub fn create() -> anyhow::Result<Isolated> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // A /30 per namespace, from the pid and a counter: 10.64.0.0/12
        // holds 2^18 of them; .1 is this side, .2 the namespace's.
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
        let _ = ip(&["netns", "del", &ns]);
        let _ = ip(&["link", "del", &host_if]);
        ip(&["netns", "add", &ns])?;
        let me = Isolated {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
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
        Ok(me)
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
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
