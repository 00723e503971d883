//! `git`, as the live tests run it against the test environment's git server.

use std::path::Path;
use std::process::Command;

/// Runs `git args` in `dir` as user `test`, trusting the certificate authority in the file
/// `ca` for HTTPS (through `GIT_SSL_CAINFO`, which beats a machine's `http.sslCAInfo`), and
/// panics with git's output when it fails.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// devops_stack_test::git::run(dir.path(), &["init", "-q", "-b", "main"], None);
/// assert!(dir.path().join(".git").is_dir());
/// ```
///
/// # Panics
/// When git cannot run or exits with an error.
pub fn run(dir: &Path, args: &[&str], ca: Option<&Path>) {
    let mut cmd = Command::new("git");
    if let Some(ca) = ca {
        cmd.env("GIT_SSL_CAINFO", ca);
    }
    let out = cmd
        .current_dir(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
