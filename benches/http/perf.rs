//! `--perf WORKLOAD`: a `perf record -g` of the server exactly while that workload's
//! measured window is open, and the top of `perf report` afterwards.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::load::Window;

/// The `perf` executable: `$PERF`, else `perf` when it runs, else Debian's versioned
/// `/usr/bin/perf_*` (its `perf` wrapper refuses kernels it was not built for).
pub fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PERF") {
        return Some(path.into());
    }
    let works = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(Path::new("perf")) {
        return Some("perf".into());
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("perf_"))
        })
        .collect();
    versioned.sort();
    versioned.into_iter().rev().find(|p| works(p))
}

/// Records `pid` into `data` while the window is open.
pub struct Record {
    perf: PathBuf,
    pid: u32,
    data: PathBuf,
    child: Option<Child>,
}

impl Record {
    /// A recorder for `pid`, writing `data`.
    pub fn new(perf: PathBuf, pid: u32, data: PathBuf) -> Self {
        Self {
            perf,
            pid,
            data,
            child: None,
        }
    }
}

impl Window for Record {
    fn open(&mut self) {
        // perf would keep the previous file as `.old`.
        let _ = std::fs::remove_file(&self.data);
        let child = Command::new(&self.perf)
            .args(["record", "-g", "-o"])
            .arg(&self.data)
            .args(["-p", &self.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) => eprintln!("warning: perf record did not start: {e}"),
        }
    }

    fn close(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT makes perf write its data file and exit.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            match child.wait() {
                // perf ends itself with the SIGINT it was sent once its data is written.
                Ok(status) if !status.success() && status.signal() != Some(2) => {
                    eprintln!("warning: perf record exited with {status} (perf_event_paranoid?)");
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: perf record: {e}"),
            }
        }
    }
}

/// The top of the profile in `data`: the shared objects (`--sort dso`), then the symbols
/// over 1% (`--no-children`, flat), each as `perf report --stdio` prints it. The full
/// symbol report is written beside `data` as `.txt`.
pub fn report(perf: &Path, data: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        let output = Command::new(perf)
            .args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
            .arg(data)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let full = run(&[])?;
    let _ = std::fs::write(data.with_extension("txt"), &full);
    let rows = |text: &str, limit: usize| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .take(limit)
            .map(str::trim_end)
            .map(str::to_owned)
            .collect()
    };
    let samples = full
        .lines()
        .find(|l| l.starts_with("# Samples"))
        .unwrap_or("# Samples: ?")
        .to_owned();
    let dsos = rows(&run(&["--sort", "dso", "--percent-limit", "1"])?, 12);
    let symbols = rows(&run(&["--percent-limit", "1"])?, 45);
    if symbols.is_empty() {
        return None;
    }
    Some(format!(
        "{samples}\n\nby shared object (--sort dso):\n{}\n\nby symbol (--no-children, over 1%):\n{}",
        dsos.join("\n"),
        symbols.join("\n")
    ))
}
