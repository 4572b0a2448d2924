//! `scripts/watch-changes.py`, the README's standard-library client: it replays from a
//! position and then prints live changes; the README shows the same file.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{category, config, product, spawn};
use crate::support::skip_outside_ci;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/watch-changes.py");

#[test]
fn the_readme_shows_the_script_as_it_is() {
    let readme = include_str!("../../../README.md");
    let script = include_str!("../../../scripts/watch-changes.py");
    assert!(
        readme.contains(&format!("```python\n{script}```")),
        "README's python block differs from scripts/watch-changes.py"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_replays_then_follows() {
    let test = "the_python_client_replays_then_follows";
    if Command::new("python3").arg("--version").output().is_err() {
        skip_outside_ci(test, "no python3 on PATH");
        return;
    }
    let app = spawn(super::Backend::Memdb, config(|_| {})).await;
    let cat = category(&app, "script").await;
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .arg(&app.base)
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a line in time")
            .expect("the script is running");
        serde_json::from_str::<serde_json::Value>(&line).expect("one JSON change per line")
    };
    let first = next(&mut rx).await;
    assert_eq!(first["id"], cat, "replayed: {first}");
    let p = product(&app, &cat, "PY-1", None).await;
    let second = next(&mut rx).await;
    assert_eq!(second["id"], p, "live: {second}");
    assert_eq!(second["node"]["sku"], "PY-1");
    let _ = child.kill();
    let _ = child.wait();
}
