//! The deployment files: the compose layout, the Dockerfile's build command, and the binary run
//! with exactly the environment compose gives it.
//!
//! Compose files are read through a real compose parser (`scripts/validate-compose`), so these
//! tests check what Docker would run (merges, anchors and interpolation resolved), not how the
//! YAML happens to be written. Without a parser they skip, except in CI.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::free_port;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const HEALTHCHECK: [&str; 3] = ["CMD", "/usr/local/bin/gitstore-api", "healthcheck"];

/// `compose.yml` alone and merged with `compose.scylla.yml`, as the parser resolved them.
struct Rendered {
    base: Value,
    merged: Value,
}

/// Runs the validator once for all tests; `Err` says why it could not run.
fn rendered() -> Result<&'static Rendered, &'static str> {
    static RENDERED: OnceLock<Result<Rendered, &'static str>> = OnceLock::new();
    RENDERED
        .get_or_init(render)
        .as_ref()
        .map_err(|reason| *reason)
}

fn render() -> Result<Rendered, &'static str> {
    let out = tempfile::tempdir().unwrap();
    // --no-install: a test never installs system packages; `.ci/run` runs the script first.
    let output = Command::new(format!("{ROOT}/scripts/validate-compose"))
        .arg("--no-install")
        .arg(out.path())
        .output()
        .expect("scripts/validate-compose runs");
    match output.status.code() {
        Some(0) => {}
        Some(77) => {
            return Err(
                "no compose parser (run scripts/validate-compose once to install docker-compose)",
            );
        }
        _ => panic!(
            "scripts/validate-compose rejected the compose files ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
    let read = |name: &str| -> Value {
        let text = fs::read_to_string(out.path().join(name)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"))
    };
    Ok(Rendered {
        base: read("base.json"),
        merged: read("merged.json"),
    })
}

fn service<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name:?} in {config:#}"))
}

fn service_names(config: &Value) -> BTreeSet<&str> {
    config["services"]
        .as_object()
        .expect("services is a mapping")
        .keys()
        .map(String::as_str)
        .collect()
}

/// A service's environment; `config` always renders it as a mapping.
fn environment(service: &Value) -> Vec<(String, String)> {
    let Some(env) = service.get("environment") else {
        return Vec::new();
    };
    env.as_object()
        .unwrap_or_else(|| panic!("environment is not a mapping: {env}"))
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

fn env_value(service: &Value, name: &str) -> String {
    environment(service)
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .unwrap_or_else(|| panic!("{name} not set in {service:#}"))
}

/// `depends_on.<on>.condition`.
fn condition<'a>(service: &'a Value, on: &str) -> &'a str {
    service["depends_on"][on]["condition"]
        .as_str()
        .unwrap_or_else(|| panic!("no depends_on condition on {on:?} in {service:#}"))
}

/// Asserts what must hold for `api` in every configuration.
fn check_api(config: &Value) {
    let api = service(config, "api");
    let port = env_value(api, "GITSTORE_API_PORT");
    assert_eq!(port, "4000", "the Go service's port");
    // Long syntax after `config`; `published` is a number for compose v1, a string for v2.
    let ports = api["ports"].as_array().expect("api publishes ports");
    assert!(
        ports.iter().any(|p| {
            p["target"].to_string().trim_matches('"') == port
                && p["published"].to_string().trim_matches('"') == "4000"
        }),
        "api must publish 4000 to the port it listens on: {ports:?}"
    );
    assert_eq!(api["healthcheck"]["test"], serde_json::json!(HEALTHCHECK));
    assert_eq!(api["restart"], "unless-stopped");
}

#[test]
fn compose_files_resolve_to_the_documented_layout() {
    let test = "compose_files_resolve_to_the_documented_layout";
    let rendered = match rendered() {
        Ok(rendered) => rendered,
        Err(reason) => {
            crate::support::skip_outside_ci(test, reason);
            return;
        }
    };
    let (base, merged) = (&rendered.base, &rendered.merged);

    assert_eq!(service_names(base), BTreeSet::from(["api"]));
    check_api(base);
    assert_eq!(
        env_value(service(base, "api"), "GITSTORE_DATASTORE_BACKEND"),
        "memdb"
    );

    assert_eq!(
        service_names(merged),
        BTreeSet::from(["api", "scylla", "scylla-init"])
    );
    check_api(merged);
    let (api, scylla, init) = (
        service(merged, "api"),
        service(merged, "scylla"),
        service(merged, "scylla-init"),
    );
    assert_eq!(env_value(api, "GITSTORE_DATASTORE_BACKEND"), "scylla");
    assert_eq!(
        condition(api, "scylla-init"),
        "service_completed_successfully"
    );
    assert_eq!(condition(init, "scylla"), "service_healthy");
    assert_eq!(init["restart"], "no", "scylla-init runs once");
    let probe = scylla["healthcheck"]["test"].to_string();
    assert!(
        probe.contains("cqlsh"),
        "scylla healthcheck asks CQL: {probe}"
    );
    // One source for the connection: the init job creates the keyspace the API then uses.
    for name in [
        "GITSTORE_DATASTORE_SCYLLA_HOSTS",
        "GITSTORE_DATASTORE_SCYLLA_KEYSPACE",
    ] {
        assert_eq!(env_value(init, name), env_value(api, name), "{name}");
    }
    assert!(env_value(api, "GITSTORE_DATASTORE_SCYLLA_HOSTS").starts_with("scylla:"));

    let known = gitstore_api::config::env_var_names();
    for config in [base, merged] {
        for (service_name, service) in config["services"].as_object().unwrap() {
            for (name, _) in environment(service) {
                if name.starts_with("GITSTORE_") {
                    assert!(
                        known.contains(&name),
                        "service {service_name} sets {name}, which the binary does not read"
                    );
                }
            }
        }
    }
}

/// The `cargo build ...` command on `line`, with its leading `NAME=value` assignments, up to the
/// end of that shell command (`&&`, `;`, `|`, a line continuation or the end of the line).
fn cargo_build_command(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let cargo = words
        .windows(2)
        .position(|pair| pair == ["cargo", "build"])?;
    let is_assignment = |word: &str| {
        word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    let assignments = words[..cargo]
        .iter()
        .rev()
        .take_while(|word| is_assignment(word))
        .count();
    let start = cargo - assignments;
    let end = words[cargo..]
        .iter()
        .position(|word| ["&&", "||", ";", "|", "\\"].contains(word))
        .map_or(words.len(), |at| cargo + at);
    Some(words[start..end].join(" "))
}

fn cargo_build_commands(path: &str) -> Vec<String> {
    let text = fs::read_to_string(format!("{ROOT}/{path}")).unwrap();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(cargo_build_command)
        .collect()
}

#[test]
fn cargo_build_command_finds_the_whole_command() {
    assert_eq!(
        cargo_build_command(" && A_1=1 B=x cargo build --release --locked \\").as_deref(),
        Some("A_1=1 B=x cargo build --release --locked")
    );
    assert_eq!(
        cargo_build_command("RUN cargo build -p x && strip y").as_deref(),
        Some("cargo build -p x")
    );
    assert_eq!(cargo_build_command("cargo test"), None);
}

#[test]
fn dockerfile_builds_the_release_binary_exactly_as_ci_does() {
    let ci: Vec<String> = cargo_build_commands(".ci/run")
        .into_iter()
        .filter(|command| command.contains("--release"))
        .collect();
    assert_eq!(
        ci.len(),
        1,
        ".ci/run should build the release binary once: {ci:?}"
    );
    let docker = cargo_build_commands("Dockerfile");
    assert!(!docker.is_empty(), "no `cargo build` in the Dockerfile");
    for command in &docker {
        assert_eq!(
            command, &ci[0],
            "the Dockerfile builds differently from .ci/run"
        );
    }
}

#[test]
fn dockerfile_runs_unprivileged_and_probes_itself() {
    let dockerfile = fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    // One instruction per logical line: continuations joined.
    let logical = dockerfile.replace("\\\n", " ");
    let instruction = |name: &str| -> Vec<String> {
        logical
            .lines()
            .filter_map(|line| line.strip_prefix(name))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let user = instruction("USER ");
    let user = user.last().expect("the image sets USER");
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "runs as {user}"
    );
    assert_eq!(instruction("EXPOSE "), ["4000"]);
    assert_eq!(
        instruction("ENTRYPOINT "),
        [r#"["/usr/local/bin/gitstore-api"]"#]
    );
    assert_eq!(instruction("CMD "), [r#"["serve"]"#]);
    assert_eq!(instruction("STOPSIGNAL "), ["SIGTERM"]);
    // The same probe as compose's healthcheck, in exec form (the image has no shell).
    let healthcheck = instruction("HEALTHCHECK ");
    let [healthcheck] = healthcheck.as_slice() else {
        panic!("one HEALTHCHECK expected: {healthcheck:?}");
    };
    let (_, probe) = healthcheck
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let probe: Vec<String> = serde_json::from_str(probe).expect("exec form");
    assert_eq!(probe, HEALTHCHECK[1..]);
}

#[tokio::test]
async fn binary_serves_and_stops_cleanly_with_the_compose_environment() {
    let test = "binary_serves_and_stops_cleanly_with_the_compose_environment";
    let rendered = match rendered() {
        Ok(rendered) => rendered,
        Err(reason) => {
            crate::support::skip_outside_ci(test, reason);
            return;
        }
    };
    // The container's environment as is, except the port: 4000 may be taken on this machine.
    let port = free_port().to_string();
    let env: Vec<(String, String)> = environment(service(&rendered.base, "api"))
        .into_iter()
        .map(|(name, value)| {
            let value = if name == "GITSTORE_API_PORT" {
                port.clone()
            } else {
                value
            };
            (name, value)
        })
        .collect();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitstore-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("the binary starts");
    let logs = || fs::read_to_string(log.path()).unwrap_or_default();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited early with {status} under {env:?}:\n{}", logs());
        }
        if let Ok(response) = client.get(&health).send().await
            && response.status() == 200
        {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "/health never answered 200 within 30s under {env:?}:\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "could not send SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 15s after SIGTERM:\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{}", logs());
}
