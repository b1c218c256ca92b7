//! Where the workspace's binaries are, for tests that run them as real
//! processes.
//!
//! Cargo only builds a package's binaries for the integration tests of that
//! same package, so the tests in this crate cannot rely on
//! `env!("CARGO_BIN_EXE_ballast")`: they look for the binary in the target
//! directory they were built into instead. Build the binaries first:
//! `cargo build --workspace --bins` (as `scripts/test` does), or
//! `cargo build -p ballast-cli` for just `ballast`. A binary left over from
//! an older build is used as it is: rebuild after changing the CLI.

use std::path::{Path, PathBuf};

/// The `ballast` binary of the profile the running test was built with.
///
/// # Panics
/// When it has not been built, with the command that builds it.
pub fn ballast_bin() -> PathBuf {
    match workspace_bin("ballast") {
        Ok(path) => path,
        Err(msg) => panic!("{msg}; run `cargo build -p ballast-cli` first"),
    }
}

/// `target/<profile>/<name>` next to the running test executable, which
/// lives in `target/<profile>/deps/`; an error naming the path looked at
/// when it is not there.
pub fn workspace_bin(name: &str) -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate the test executable: {e}"))?;
    let profile_dir = profile_dir(&exe)
        .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found", path.display()))
    }
}

/// `target/<profile>` for a test executable in `target/<profile>/deps/`.
fn profile_dir(exe: &Path) -> Option<&Path> {
    let deps = exe.parent()?;
    if deps.file_name()? == "deps" {
        deps.parent()
    } else {
        // Not under deps/ (e.g. run by hand from elsewhere): assume the
        // executable sits in the profile directory itself.
        Some(deps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_is_the_parent_of_deps() {
        let exe = Path::new("/w/target/debug/deps/cli_assign-0123abcd");
        assert_eq!(profile_dir(exe), Some(Path::new("/w/target/debug")));
        let exe = Path::new("/w/target/release/tool");
        assert_eq!(profile_dir(exe), Some(Path::new("/w/target/release")));
    }
}
