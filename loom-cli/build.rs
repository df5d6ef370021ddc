//! `loom --version` names the git revision it was built from: `LOOM_GIT_REV` when set (an
//! image build without the repository's .git), else `git rev-parse`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LOOM_GIT_REV");
    let rev = std::env::var_os("LOOM_GIT_REV")
        .map(|r| r.to_string_lossy().into_owned())
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        });
    // A new commit changes HEAD (or the ref it names): rebuild the version string then.
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    println!(
        "cargo:rustc-env=LOOM_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
