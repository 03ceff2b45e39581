//! The command-line tools the README's install guide uses, run against the test bed: Helm
//! (built from its Go module by `make testbed`) and kubectl (from PyPI, with its built-in
//! kustomize).

use std::path::PathBuf;
use std::process::{Command, Output};

use super::TestBed;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `helm` (target/testbed/bin/helm, built by `make testbed`), with `kubeconfig` if given.
pub fn helm(args: &[&str], kubeconfig: Option<&str>) -> Output {
    let bin = root().join("target/testbed/bin/helm");
    let cache = root().join("target/testbed/helm-home");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(root())
        .args(args)
        .env("HELM_CACHE_HOME", cache.join("cache"))
        .env("HELM_CONFIG_HOME", cache.join("config"))
        .env("HELM_DATA_HOME", cache.join("data"));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{} runs (built by `make testbed`): {e}", bin.display()))
}

/// Runs the PyPI kubectl (installed by `make testbed`) against the test bed: (success, output).
pub fn kubectl(bed: &TestBed, args: &[&str]) -> (bool, String) {
    let out = Command::new(root().join("target/testbed/venv/bin/kubectl"))
        .current_dir(root())
        .args(args)
        .env("KUBECONFIG", bed.var("KUBECONFIG"))
        .output()
        .expect("kubectl runs (installed by `make testbed`)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
