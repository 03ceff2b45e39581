//! The `bucketwire` command line without a test bed: what `bucketwire validate --help` promises
//! (exit codes, the caller's own rights, `--context`) is what it does, and settings that would
//! mean something else than they say are refused before anything starts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory for one test (a HOME without ~/.kube or ~/.aws, kubeconfigs).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bucketwire-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs `bucketwire` with nothing from this environment but PATH, HOME = `home` and `env`:
/// (exit code, stdout, stderr).
fn bucketwire(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketwire"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home);
    for (var, value) in env {
        cmd.env(var, value);
    }
    let out = cmd.output().expect("bucketwire runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A kubeconfig whose only context, `elsewhere`, points at a port nothing listens on.
fn kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\n\
         clusters:\n- name: elsewhere\n  cluster:\n    server: https://127.0.0.1:9\n\
         contexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: nobody\n\
         users:\n- name: nobody\n  user:\n    token: none\n",
    )
    .expect("kubeconfig written");
    path
}

#[test]
fn validate_help_states_its_exit_codes_the_callers_rights_and_context() {
    let home = scratch("help");
    let (code, help, _) = bucketwire(&home, &["validate", "--help"], &[]);
    assert_eq!(code, 0);
    for promise in [
        // Exit codes, each with its meaning.
        "Exit codes:",
        "0  every check passed",
        "1  not validated",
        "2  usage error",
        // Whose credentials, and which rights.
        "YOUR credentials, not the operator's",
        "bucketintegrations.bucketwire.io",
        "serviceaccounts/token",
        "iam:GetRole",
        "s3:DeleteObjectVersion",
        "iam:GetPolicyVersion",
        "--context <CONTEXT>",
    ] {
        assert!(
            help.contains(promise),
            "`validate --help` lacks {promise:?}:\n{help}"
        );
    }
    let (_, summary, _) = bucketwire(&home, &["--help"], &[]);
    assert!(
        summary.contains("exit code 0 (validated), 1 (not validated) or 2 (usage error)"),
        "{summary}"
    );
}

#[test]
fn validate_usage_errors_exit_2_without_contacting_anything() {
    let home = scratch("usage");
    // Were Kubernetes contacted, this kubeconfig would make it exit 1 ("cannot reach").
    let config = kubeconfig(&home);
    let env = [("KUBECONFIG", config.to_str().expect("utf-8 path"))];
    for args in [
        &["validate"][..],
        &["validate", "milvus-prod"],
        &["validate", "milvus/"],
        &["validate", "/milvus-prod"],
        &["validate", "milvus/milvus-prod/extra"],
        &["validate", "milvus/milvus-prod", "--no-such-flag"],
        &["validate", "milvus/milvus-prod", "--context"],
        &["describe", "milvus-prod"],
    ] {
        let (code, stdout, stderr) = bucketwire(&home, args, &env);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("cannot"),
            "{args:?} contacted something: {stderr}"
        );
    }
    let (_, _, stderr) = bucketwire(&home, &["validate", "milvus-prod"], &env);
    assert!(
        stderr.contains("give the integration as NAMESPACE/NAME"),
        "{stderr}"
    );
}

#[test]
fn validate_that_cannot_run_exits_1_and_context_picks_the_kubeconfig_context() {
    let home = scratch("context");
    let config = kubeconfig(&home);
    let env = [("KUBECONFIG", config.to_str().expect("utf-8 path"))];

    // The named context is used: one the kubeconfig lacks is an error that names it.
    let (code, stdout, stderr) = bucketwire(
        &home,
        &["validate", "milvus/milvus-prod", "--context", "prod"],
        &env,
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("kubeconfig context \"prod\""), "{stderr}");

    // A context that exists but whose apiserver cannot be reached: not validated, exit 1.
    let (code, stdout, stderr) = bucketwire(
        &home,
        &["validate", "milvus/milvus-prod", "--context", "elsewhere"],
        &env,
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("milvus/milvus-prod"), "{stderr}");
}

#[test]
fn run_refuses_a_concurrency_of_zero_before_starting() {
    let home = scratch("concurrency");
    let config = kubeconfig(&home);
    let env = [("KUBECONFIG", config.to_str().expect("utf-8 path"))];
    for (flag, var) in [
        (
            "--max-concurrent-reconciles",
            "BUCKETWIRE_MAX_CONCURRENT_RECONCILES",
        ),
        ("--list-page-size", "BUCKETWIRE_LIST_PAGE_SIZE"),
    ] {
        let (code, _, stderr) = bucketwire(&home, &["run", "--cluster-name", "c", flag, "0"], &env);
        assert_eq!(code, 2, "{flag} 0: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("0 is not in 1.."),
            "{stderr}"
        );
        // The chart sets the environment variable: refused the same way.
        let (code, _, stderr) = bucketwire(&home, &["run", "--cluster-name", "c"], &[env[0], (var, "0")]);
        assert_eq!(code, 2, "{var}=0: {stderr}");
    }
}
