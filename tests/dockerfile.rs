//! The Dockerfile and `make image` build one image (issue 15).
//!
//! No Docker engine runs here, so `make image` (scripts/image-oci.py) builds the image without
//! one: it runs the Dockerfile's build-stage commands on this host and gives the layer the final
//! stage's configuration. These tests keep the two from drifting apart:
//!
//! - on the Dockerfile alone: its build stage copies every source Cargo needs, is pinned, runs
//!   the release build and scripts/image-rootfs.sh; its runtime stage is `FROM scratch`, that
//!   script's output and the user, entrypoint and command the chart relies on; `make image` is
//!   the driver that reads this Dockerfile;
//! - on the archive `make image` wrote (target/image/bucketwire.oci.tar, or
//!   `$BUCKETWIRE_IMAGE_ARCHIVE`, which make exports with the image's name):
//!   named as the chart pulls it, its configuration is the Dockerfile's final stage, its one
//!   layer is exactly what the script makes of the release binary (the binary, the libraries
//!   `ldd` reports, the CA bundle, passwd/group/nsswitch.conf, nothing else), and the image runs
//!   under runc as 65532 with a read-only root filesystem and no capabilities.
//!
//! The archive tests need `make image` first (`make test` runs it before the integration tests).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

mod common;

use common::results;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// --- the Dockerfile, parsed as Docker reads it (the subset this project uses) -----------------

struct Stage {
    from: String,
    /// (KEYWORD, arguments), continuations joined, comments dropped.
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    fn one(&self, keyword: &str) -> &str {
        let all = self.all(keyword);
        assert_eq!(
            all.len(),
            1,
            "the stage FROM {} has one {keyword}: {all:?}",
            self.from
        );
        all[0]
    }
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        let (keyword, args) = (keyword.to_uppercase(), args.trim().to_string());
        if keyword == "FROM" {
            stages.push(Stage {
                from: args,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push((keyword, args));
        }
        current.clear();
    }
    stages
}

/// Whitespace-separated words, double quotes grouping (LABEL's `key="a value"`).
fn words(args: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The runtime configuration Docker gives the image: the final stage's USER, ENTRYPOINT, CMD
/// and LABELs.
struct Runtime {
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
}

fn exec_form(keyword: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{keyword} is in exec form (a JSON array): {keyword} {args}: {e}"))
}

fn runtime(stage: &Stage) -> Runtime {
    let labels = stage
        .all("LABEL")
        .iter()
        .flat_map(|args| words(args))
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("LABEL key=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    Runtime {
        user: stage.one("USER").to_string(),
        entrypoint: exec_form("ENTRYPOINT", stage.one("ENTRYPOINT")),
        cmd: exec_form("CMD", stage.one("CMD")),
        labels,
    }
}

fn dockerfile() -> Vec<Stage> {
    let stages = stages(&read("Dockerfile"));
    assert_eq!(
        stages.len(),
        2,
        "the Dockerfile has two stages: build and runtime"
    );
    stages
}

/// The sources (first path segment) the Dockerfile copies into its build stage.
fn copied_sources(build: &Stage) -> Vec<String> {
    build
        .all("COPY")
        .iter()
        .flat_map(|args| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            // Every argument but the last is a source.
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.trim_start_matches("./").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The chart's defaults: `values.yaml`'s image.repository and `Chart.yaml`'s appVersion (read as
/// lines: both are plain scalars).
fn chart_image() -> (String, String) {
    let app_version = read("charts/bucketwire/Chart.yaml")
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .expect("Chart.yaml has an appVersion")
        .trim()
        .trim_matches('"')
        .to_string();
    let values = read("charts/bucketwire/values.yaml");
    let repository = values
        .lines()
        .skip_while(|l| *l != "image:")
        .find_map(|l| l.trim().strip_prefix("repository:"))
        .expect("values.yaml has image.repository")
        .trim()
        .to_string();
    (repository, app_version)
}

const BUILD: &str = "cargo build --release --locked --bin bucketwire";
const ROOTFS: &str = "scripts/image-rootfs.sh target/release/bucketwire /rootfs";

// --- the Dockerfile alone -------------------------------------------------------------------

#[test]
fn the_build_stage_copies_every_target_the_manifest_declares() {
    // Cargo refuses a manifest whose declared targets (the `[[bench]]`) have no source file
    // ("can't find `operator` bench at `benches/operator.rs`").
    let manifest = read("Cargo.toml");
    let copied: Vec<String> = copied_sources(&dockerfile()[0])
        .iter()
        .map(|c| c.split('/').next().unwrap_or("").to_string())
        .collect();
    let mut needed = vec!["Cargo.toml", "Cargo.lock", "src", "scripts"];
    for (section, dir) in [
        ("[[bench]]", "benches"),
        ("[[example]]", "examples"),
        ("[[test]]", "tests"),
    ] {
        if manifest.lines().any(|l| l.trim() == section) {
            needed.push(dir);
        }
    }
    assert!(
        needed.contains(&"benches"),
        "the manifest declares the operator bench"
    );
    for item in &needed {
        assert!(
            copied.iter().any(|c| c == item),
            "the Dockerfile's build stage does not copy {item} (it copies {copied:?}); the build cannot run without it"
        );
    }
}

#[test]
fn the_dockerfile_builds_what_make_image_builds() {
    let stages = dockerfile();
    let (build, image) = (&stages[0], &stages[1]);

    // Pinned: an exact Rust release, of the toolchain the manifest asks for, on the Debian
    // release whose libraries `make image` copies from this machine.
    let (base, name) = build.from.split_once(" AS ").expect("FROM <image> AS build");
    assert_eq!(name, "build");
    let tag = base
        .strip_prefix("rust:")
        .expect("the build stage is the official rust image");
    let (version, suite) = tag.split_once('-').expect("rust:<version>-<debian release>");
    assert!(
        version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "the build stage's rust image is pinned to an exact release (x.y.z), not {version}"
    );
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml's rust-version")
        .trim_matches('"')
        .to_string();
    assert!(
        version.starts_with(&format!("{rust_version}.")),
        "the build stage's Rust {version} is the manifest's rust-version {rust_version}"
    );
    let os_release = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .expect("VERSION_CODENAME");
    assert_eq!(
        suite, codename,
        "the Dockerfile builds on Debian {suite}, `make image` copies this machine's ({codename}) libraries"
    );

    // The build stage runs exactly the release build and the shared rootfs script.
    assert_eq!(build.all("RUN"), vec![BUILD, ROOTFS]);
    assert!(copied_sources(build).contains(&"scripts/image-rootfs.sh".to_string()));

    // The runtime stage is that script's output and the configuration the chart relies on.
    assert_eq!(
        image.from, "scratch",
        "the runtime stage adds nothing to the rootfs"
    );
    let config: Vec<(&str, &str)> = image
        .instructions
        .iter()
        .filter(|(k, _)| k != "LABEL")
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        config,
        vec![
            ("COPY", "--from=build /rootfs/ /"),
            ("USER", "65532:65532"),
            ("ENTRYPOINT", r#"["/bucketwire"]"#),
            ("CMD", r#"["run"]"#),
        ]
    );
    let deployment = read("charts/bucketwire/templates/deployment.yaml");
    for line in ["runAsUser: 65532", "runAsGroup: 65532", r#"args: ["run"]"#] {
        assert!(
            deployment.lines().any(|l| l.trim() == line),
            "the chart's Deployment has `{line}`, as the image"
        );
    }

    // `make image` is the driver that reads this Dockerfile, with the chart's image name, and
    // the integration tests run after it.
    let (repository, tag) = chart_image();
    let dry_run = Command::new("make")
        .current_dir(root())
        .args(["-n", "image"])
        .env_remove("IMAGE_REPOSITORY")
        .env_remove("IMAGE_TAG")
        .env_remove("IMAGE_ARCHIVE")
        .env_remove("BUCKETWIRE_IMAGE_ARCHIVE")
        .env_remove("MAKEFLAGS")
        .output()
        .expect("make runs");
    let dry_run = String::from_utf8_lossy(&dry_run.stdout);
    let driver = format!(
        "scripts/image-oci.py --repository {repository} --tag {tag} --archive target/image/bucketwire.oci.tar"
    );
    assert!(
        dry_run.contains(&driver),
        "`make -n image` runs `{driver}`:\n{dry_run}"
    );
    assert!(
        read("Makefile")
            .lines()
            .any(|l| l.starts_with("integration:") && l.split_whitespace().any(|w| w == "image")),
        "`make integration` depends on `image`"
    );
}

// --- the archive `make image` wrote ---------------------------------------------------------

/// The archive, extracted into a directory of the test's own (removed when dropped).
struct Archive {
    path: PathBuf,
    dir: PathBuf,
    repository: String,
    tag: String,
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Archive {
    fn open(name: &str) -> Self {
        let (chart_repository, chart_tag) = chart_image();
        let repository = std::env::var("BUCKETWIRE_IMAGE_REPOSITORY").unwrap_or(chart_repository);
        let tag = std::env::var("BUCKETWIRE_IMAGE_TAG").unwrap_or(chart_tag);
        let path = root().join(
            std::env::var("BUCKETWIRE_IMAGE_ARCHIVE")
                .unwrap_or_else(|_| "target/image/bucketwire.oci.tar".into()),
        );
        assert!(
            path.is_file(),
            "{} is missing: run `make image` (`make test` does)",
            path.display()
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("layout")).expect("test dir");
        run(Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(dir.join("layout")));
        Self {
            path,
            dir,
            repository,
            tag,
        }
    }

    fn blob(&self, digest: &Value) -> PathBuf {
        let digest = digest.as_str().expect("a digest");
        let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex");
        self.dir.join("layout/blobs").join(algorithm).join(hex)
    }

    fn json(&self, path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).expect("blob reads")).expect("blob is JSON")
    }
}

/// A file or directory of a root filesystem.
#[derive(Debug, PartialEq)]
struct Entry {
    mode: u32,
    uid: u32,
    gid: u32,
    /// A file's bytes; None for a directory.
    content: Option<Vec<u8>>,
}

/// Every path under `dir` (relative, `/`-rooted).
fn tree(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("dir reads") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = format!("/{}", path.strip_prefix(dir).unwrap().display());
            let content = if meta.is_file() {
                Some(std::fs::read(&path).expect("file reads"))
            } else {
                assert!(meta.is_dir(), "{rel}: only files and directories in the rootfs");
                pending.push(path.clone());
                None
            };
            let entry = Entry {
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// The libraries `ldd` reports for `binary`: resolved paths and the loader.
fn ldd(binary: &Path) -> Vec<String> {
    let mut libs: Vec<String> = run(Command::new("ldd").arg(binary))
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some(path.to_string()),
                [path, ..] if path.starts_with('/') => Some(path.to_string()),
                _ => None,
            }
        })
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

#[test]
fn make_image_wrote_the_dockerfiles_image() {
    let archive = Archive::open("image-contents");
    let stages = dockerfile();
    let expected = runtime(&stages[1]);

    // Named as the chart pulls it by default (values.yaml's repository, the appVersion).
    let index = archive.json(&archive.dir.join("layout/index.json"));
    let manifests = index["manifests"].as_array().expect("index.json lists manifests");
    assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
    assert_eq!(
        manifests[0]["annotations"],
        json!({
            "org.opencontainers.image.ref.name": archive.tag,
            "io.containerd.image.name": format!("{}:{}", archive.repository, archive.tag),
        })
    );

    // The configuration is the Dockerfile's final stage.
    let manifest = archive.json(&archive.blob(&manifests[0]["digest"]));
    let config = archive.json(&archive.blob(&manifest["config"]["digest"]));
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["architecture"],
        std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64")
    );
    assert_eq!(config["config"]["User"], expected.user);
    assert_eq!(config["config"]["Entrypoint"], json!(expected.entrypoint));
    assert_eq!(config["config"]["Cmd"], json!(expected.cmd));
    assert_eq!(config["config"]["Labels"], json!(expected.labels));
    for key in ["Env", "WorkingDir", "ExposedPorts", "Volumes", "StopSignal"] {
        assert!(
            config["config"].get(key).is_none(),
            "the Dockerfile sets no {key}: {config}"
        );
    }

    // One layer: FROM scratch adds none, the COPY of the rootfs one.
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = archive.dir.join("layer");
    std::fs::create_dir_all(&layer).expect("layer dir");
    run(Command::new("tar")
        .args(["-xzpf"])
        .arg(archive.blob(&layers[0]["digest"]))
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&layer));
    let contents = tree(&layer);

    // The binary is the one the build stage's cargo command built (Cargo's release output).
    let entrypoint = &expected.entrypoint[0];
    let binary = layer.join(entrypoint.trim_start_matches('/'));
    let release = Path::new(env!("CARGO_BIN_EXE_bucketwire"))
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("release/bucketwire");
    assert!(
        std::fs::read(&binary).ok() == std::fs::read(&release).ok(),
        "the image's {entrypoint} is {} (`cargo build --release`); if the sources changed since, run `make image` again",
        release.display()
    );

    // Exactly: the binary, the libraries ldd reports (loader included), the CA bundle the TLS
    // stack reads, passwd/group/nsswitch.conf.
    let libs = ldd(&binary);
    assert!(
        libs.iter().any(|l| l.contains("libc.so")),
        "ldd reports libc: {libs:?}"
    );
    let mut files: Vec<String> = contents
        .iter()
        .filter(|(_, entry)| entry.content.is_some())
        .map(|(path, _)| path.clone())
        .collect();
    files.sort();
    let mut wanted: Vec<String> = libs.clone();
    wanted.extend(
        [
            entrypoint.as_str(),
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/passwd",
            "/etc/group",
            "/etc/nsswitch.conf",
        ]
        .map(String::from),
    );
    wanted.sort();
    assert_eq!(files, wanted, "the image holds exactly these files");

    // ... which is what scripts/image-rootfs.sh makes of that binary, byte for byte, with the
    // same modes and owners (the Dockerfile's build stage runs the same script).
    let again = archive.dir.join("script-output");
    run(Command::new(root().join("scripts/image-rootfs.sh"))
        .arg(&binary)
        .arg(&again));
    let again = tree(&again);
    let differing: std::collections::BTreeSet<&String> = contents
        .keys()
        .chain(again.keys())
        .filter(|p| contents.get(*p) != again.get(*p))
        .collect();
    assert!(
        differing.is_empty(),
        "the layer differs from the script's output at {differing:?}"
    );

    // Everything belongs to root and is read-only to the image's user; the user exists.
    let (uid, gid) = expected.user.split_once(':').expect("USER uid:gid");
    for (path, entry) in &contents {
        assert_eq!((entry.uid, entry.gid), (0, 0), "{path} belongs to root");
        let mode = entry.mode;
        assert_eq!(mode & 0o022, 0, "{path} is writable by root only ({mode:o})");
    }
    let passwd = String::from_utf8(contents["/etc/passwd"].content.clone().unwrap()).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{uid}:{gid}:"))),
        "/etc/passwd names {uid}:{gid}: {passwd}"
    );

    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let unpacked: u64 = contents
        .values()
        .filter_map(|entry| entry.content.as_ref())
        .map(|c| c.len() as u64)
        .sum();
    results::record(
        "image",
        &json!({
            "image": format!("{}:{}", archive.repository, archive.tag),
            "archive_bytes": size(&archive.path),
            "layer_gzip_bytes": layers[0]["size"],
            "unpacked_bytes": unpacked,
            "binary_bytes": size(&binary),
            "files": files,
        }),
    );
}

/// runc's state directory and the container, removed when dropped.
struct Container {
    runc: PathBuf,
    state: PathBuf,
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &self.id])
            .output();
    }
}

#[test]
fn the_image_runs_as_65532_with_a_read_only_root_filesystem() {
    let archive = Archive::open("image-runc");
    let stages = dockerfile();
    let expected = runtime(&stages[1]);

    // The runtime bundle a container runtime derives from the image (umoci does it as
    // containerd does: user, args, env from the image's configuration and /etc/passwd).
    let bundle = archive.dir.join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!(
            "{}:{}",
            archive.dir.join("layout").display(),
            archive.tag
        ))
        .arg(&bundle));
    let spec_path = bundle.join("config.json");
    let mut spec = archive.json(&spec_path);
    let (uid, gid) = expected.user.split_once(':').expect("USER uid:gid");
    assert_eq!(
        spec["process"]["user"],
        json!({"uid": uid.parse::<u32>().unwrap(), "gid": gid.parse::<u32>().unwrap()})
    );
    let mut args = expected.entrypoint.clone();
    args.extend(expected.cmd.clone());
    assert_eq!(
        spec["process"]["args"],
        json!(args),
        "the image runs ENTRYPOINT + CMD"
    );

    // As the chart runs it: read-only root filesystem, no capabilities; `--version` in place of
    // `run` (which needs a cluster). No terminal, and no oomScoreAdj (lowering it needs
    // CAP_SYS_RESOURCE, which this machine lacks).
    let process = spec["process"].as_object_mut().unwrap();
    process.insert("terminal".into(), json!(false));
    process.insert("args".into(), json!([expected.entrypoint[0], "--version"]));
    process.remove("oomScoreAdj");
    for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
        process["capabilities"][set] = json!([]);
    }
    spec["root"]["readonly"] = json!(true);
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).expect("config.json written");

    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.exists())
        .expect("runc is installed (make image-tools)");
    let container = Container {
        runc: runc.clone(),
        state: archive.dir.join("runc-state"),
        id: format!("bucketwire-image-test-{}", std::process::id()),
    };
    let started = Instant::now();
    let output = run(Command::new(&runc)
        .arg("--root")
        .arg(&container.state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&container.id));
    let elapsed = started.elapsed();
    assert_eq!(output, format!("bucketwire {}\n", env!("CARGO_PKG_VERSION")));
    results::record(
        "image_run",
        &json!({"runc_run_version_seconds": elapsed.as_secs_f64(), "user": expected.user, "readonly_rootfs": true}),
    );
}
