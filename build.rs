//! Embeds the pinned GraphiQL browser bundle so `/playground` works without internet access.
//!
//! `assets/graphiql/package.json` pins exact versions of `graphiql`, `react`, `react-dom` and
//! `graphql-ws` (the WebSocket client the page uses for subscriptions), and
//! `package-lock.json` pins what npm installs. The bundle is taken from
//! `assets/graphiql/node_modules` when `npm ci --prefix assets/graphiql` has installed it there;
//! otherwise, when npm is on the PATH, this script runs `npm ci` itself into `$OUT_DIR` (offline
//! first, from npm's cache), so the README's plain `cargo run --release` serves GraphiQL
//! offline. Either way `$OUT_DIR/graphiql_assets.rs` embeds the files with `include_bytes!` and
//! `src/http/playground.rs` serves them itself. Only without Node.js (or with
//! `GITSTORE_GRAPHIQL_NPM=0`, or when npm cannot fetch the packages) does the build fall back: the
//! page then loads the very same versions from a CDN, says what to do when that fails, and this
//! script warns with a `cargo:warning`. Release builds (the Dockerfile, `.ci/run`) set
//! `GITSTORE_REQUIRE_OFFLINE_GRAPHIQL=1`, which turns that fallback into a build error, so a
//! release can never depend on a CDN by accident.
//!
//! Only `std` is used: a build dependency would be compiled before everything else on every clean
//! build, and reading three `"name": "version"` pairs does not need a JSON parser.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE_DIR: &str = "assets/graphiql";
const REQUIRE_OFFLINE_ENV: &str = "GITSTORE_REQUIRE_OFFLINE_GRAPHIQL";
const CDN_BASE: &str = "https://cdn.jsdelivr.net/npm";
/// `0` stops the build script from running npm (the CDN fallback is then used).
const NPM_ENV: &str = "GITSTORE_GRAPHIQL_NPM";

/// One browser file of the bundle.
struct Asset {
    /// Name of the constant in the generated code.
    constant: &'static str,
    /// npm package that ships the file.
    package: &'static str,
    /// Path of the file inside the package.
    path_in_package: &'static str,
    /// Served file name without the version; the version is inserted before `suffix`.
    stem: &'static str,
    /// End of the served file name.
    suffix: &'static str,
    /// `Content-Type` it is served with.
    content_type: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: [Asset; 5] = [
    Asset {
        constant: "REACT_JS",
        package: "react",
        path_in_package: "umd/react.production.min.js",
        stem: "react",
        suffix: ".production.min.js",
        content_type: JS,
    },
    Asset {
        constant: "REACT_DOM_JS",
        package: "react-dom",
        path_in_package: "umd/react-dom.production.min.js",
        stem: "react-dom",
        suffix: ".production.min.js",
        content_type: JS,
    },
    Asset {
        constant: "GRAPHIQL_JS",
        package: "graphiql",
        path_in_package: "graphiql.min.js",
        stem: "graphiql",
        suffix: ".min.js",
        content_type: JS,
    },
    // The client of the graphql-transport-ws protocol, for subscriptions in the playground.
    Asset {
        constant: "GRAPHQL_WS_JS",
        package: "graphql-ws",
        path_in_package: "umd/graphql-ws.min.js",
        stem: "graphql-ws",
        suffix: ".min.js",
        content_type: JS,
    },
    Asset {
        constant: "GRAPHIQL_CSS",
        package: "graphiql",
        path_in_package: "graphiql.min.css",
        stem: "graphiql",
        suffix: ".min.css",
        content_type: CSS,
    },
];

fn main() {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let package_dir = root.join(PACKAGE_DIR);
    let manifest_path = package_dir.join("package.json");
    let lock_path = package_dir.join("package-lock.json");

    // `sqlx::migrate!` embeds these files; rebuild when they change.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed={REQUIRE_OFFLINE_ENV}");
    println!("cargo:rerun-if-env-changed={NPM_ENV}");
    println!("cargo:rerun-if-changed={}", manifest_path.display());
    println!("cargo:rerun-if-changed={}", lock_path.display());

    let manifest = fs::read_to_string(&manifest_path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", manifest_path.display()));
    let versions: Vec<String> = ASSETS
        .iter()
        .map(|asset| {
            pinned_version(&manifest, asset.package).unwrap_or_else(|| {
                panic!(
                    "{} must pin an exact version (x.y.z) of \"{}\" under \"dependencies\"",
                    manifest_path.display(),
                    asset.package
                )
            })
        })
        .collect();

    // 1. A bundle installed in the source tree (`npm ci --prefix assets/graphiql`, as CI and
    //    the Dockerfile do). 2. Otherwise npm installs it into OUT_DIR from the lock file,
    //    offline-first from npm's cache, so a plain `cargo build` on a machine with Node.js
    //    serves GraphiQL offline. 3. Otherwise the page loads the same versions from a CDN.
    let mut problems = Vec::new();
    let mut files = match bundle(&package_dir, &versions) {
        Ok(files) => Some(files),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    if files.is_none() {
        println!("cargo:rerun-if-changed={}", package_dir.display());
        match npm_install(&package_dir, &out_dir.join("graphiql")) {
            Ok(installed) => match bundle(&installed, &versions) {
                Ok(found) => files = Some(found),
                Err(problem) => problems.push(format!("after npm ci: {problem}")),
            },
            Err(problem) => problems.push(problem),
        }
    }

    let offline = files.is_some();
    let files = files.unwrap_or_else(|| {
        let require_offline = env::var(REQUIRE_OFFLINE_ENV).is_ok_and(|value| value == "1");
        if require_offline {
            panic!(
                "{REQUIRE_OFFLINE_ENV}=1 but the pinned GraphiQL bundle is not available ({}); \
                 install Node.js and npm, or run `npm ci --prefix {PACKAGE_DIR}` first",
                problems.join("; ")
            );
        }
        println!(
            "cargo:warning=GraphiQL assets not embedded ({}): /playground will load GraphiQL from \
             {CDN_BASE}; build on a machine with Node.js and npm to serve it offline",
            problems.join("; ")
        );
        ASSETS
            .iter()
            .zip(&versions)
            .map(|(asset, version)| (asset, version.clone(), PathBuf::new()))
            .collect()
    });
    if offline {
        // Only existing files are watched: cargo reruns a build script on every build while a
        // watched path is missing, which would recompile the crate every time.
        for (_, _, file) in &files {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }

    let out = out_dir.join("graphiql_assets.rs");
    let code = generate(offline, &files);
    // Rewriting identical content would still bump the mtime and force a recompile.
    if fs::read_to_string(&out).ok().as_deref() != Some(code.as_str()) {
        fs::write(&out, code).unwrap_or_else(|err| panic!("cannot write {}: {err}", out.display()));
    }
}

/// The four browser files under `base/node_modules`, if all are the pinned versions.
fn bundle<'a>(
    base: &Path,
    versions: &[String],
) -> Result<Vec<(&'a Asset, String, PathBuf)>, String> {
    let mut files = Vec::new();
    for (asset, version) in ASSETS.iter().zip(versions) {
        let package_root = base.join("node_modules").join(asset.package);
        let file = package_root.join(asset.path_in_package);
        match installed_version(&package_root) {
            Some(installed) if installed == *version && file.is_file() => {}
            Some(installed) if installed != *version => {
                return Err(format!(
                    "{} {installed} is installed but package.json pins {version}",
                    asset.package
                ));
            }
            _ => return Err(format!("{} is missing", file.display())),
        }
        files.push((asset, version.clone(), file));
    }
    Ok(files)
}

/// Runs `npm ci` for the pinned bundle in `dest` (a copy of package.json and the lock
/// file), unless the same lock file was installed there before. Returns `dest`.
fn npm_install(package_dir: &Path, dest: &Path) -> Result<PathBuf, String> {
    if env::var(NPM_ENV).is_ok_and(|value| value == "0") {
        return Err(format!("{NPM_ENV}=0 disables the npm install"));
    }
    let lock = fs::read(package_dir.join("package-lock.json"))
        .map_err(|err| format!("cannot read package-lock.json: {err}"))?;
    let stamp = dest
        .join("node_modules")
        .join(".installed-package-lock.json");
    if fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(dest.to_path_buf());
    }
    fs::create_dir_all(dest).map_err(|err| format!("cannot create {}: {err}", dest.display()))?;
    for name in ["package.json", "package-lock.json"] {
        fs::copy(package_dir.join(name), dest.join(name))
            .map_err(|err| format!("cannot copy {name}: {err}"))?;
    }
    let output = Command::new("npm")
        .arg("ci")
        .arg("--prefix")
        .arg(dest)
        .args([
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--fetch-retries=1",
            "--fetch-timeout=30000",
            "--loglevel=error",
        ])
        .output()
        .map_err(|err| format!("npm is not available ({err})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "npm ci failed ({})",
            last.unwrap_or("no message").trim()
        ));
    }
    fs::write(&stamp, &lock).map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(dest.to_path_buf())
}

/// The generated module: see `src/http/playground.rs` for how each item is used.
fn generate(offline: bool, files: &[(&Asset, String, PathBuf)]) -> String {
    let mut code = String::from("// @generated by build.rs from assets/graphiql; do not edit.\n\n");
    let _ = writeln!(code, "pub(super) const OFFLINE: bool = {offline};\n");
    for (asset, version, _) in files {
        let _ = writeln!(
            code,
            "pub(super) const {}: Asset = Asset {{ file_name: {:?}, cdn_url: {:?} }};",
            asset.constant,
            served_name(asset, version),
            format!(
                "{CDN_BASE}/{}@{version}/{}",
                asset.package, asset.path_in_package
            ),
        );
    }
    code.push_str("\npub(super) static EMBEDDED: &[EmbeddedFile] = &[\n");
    if offline {
        for (asset, version, file) in files {
            let _ = writeln!(
                code,
                "    EmbeddedFile {{ file_name: {:?}, content_type: {:?}, bytes: include_bytes!({:?}) }},",
                served_name(asset, version),
                asset.content_type,
                file.display().to_string(),
            );
        }
    }
    code.push_str("];\n");
    code
}

/// `graphiql-3.9.0.min.js`: the version in the name lets the files be cached forever.
fn served_name(asset: &Asset, version: &str) -> String {
    format!("{}-{version}{}", asset.stem, asset.suffix)
}

/// The exact version `package.json` pins for `package` under `"dependencies"`.
///
/// Ranges (`^1.2.3`) are refused: the CDN fallback must name the exact version that
/// `package-lock.json` would install.
fn pinned_version(manifest: &str, package: &str) -> Option<String> {
    let start = manifest.find("\"dependencies\"")?;
    let body = &manifest[start..];
    let body = &body[body.find('{')? + 1..];
    let body = &body[..body.find('}')?];
    let strings = string_literals(body);
    let version = strings
        .chunks_exact(2)
        .find(|pair| pair[0] == package)
        .map(|pair| pair[1].clone())?;
    let exact = version.split('.').count() == 3
        && version
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    exact.then_some(version)
}

/// The `"version"` of an installed package, or `None` when it is not installed.
fn installed_version(package_root: &Path) -> Option<String> {
    let manifest = fs::read_to_string(package_root.join("package.json")).ok()?;
    let strings = string_literals(&manifest);
    let at = strings.iter().position(|s| s == "version")?;
    strings.get(at + 1).cloned()
}

/// Every `"..."` literal in order. npm names and versions contain no escapes, so none are decoded;
/// an escaped quote is skipped over so that it cannot split a literal.
fn string_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        literal.push(escaped);
                    }
                }
                '"' => break,
                c => literal.push(c),
            }
        }
        out.push(literal);
    }
    out
}
