//! Configuration files: `./.env` and a TOML file (`--config <path>`, `GITSTORE_CONFIG`, or
//! `./config.toml` when present), fed to clap as defaults so that the precedence is
//! command-line flag > process environment > `.env` > TOML file > built-in default.
//!
//! Nothing here changes the process environment (`set_var` is unsafe in edition 2024):
//! file values become clap `default_value`s, which clap's own `env` lookup overrides.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

use crate::config::{Cli, env_var_names};

/// The `.env` file read from the working directory.
pub const DOTENV_FILE: &str = ".env";
/// The TOML file read from the working directory when no other is named.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";
/// The variable (and `--config` flag) naming the TOML file.
pub const CONFIG_VAR: &str = "GITSTORE_CONFIG";

/// `GITSTORE_*` names that are not runtime settings and never warned about.
const NOT_SETTINGS: &[&str] = &[
    "GITSTORE_REQUIRE_OFFLINE_GRAPHIQL",
    "GITSTORE_DEFAULTS_PROBE",
];
/// Prefixes of `GITSTORE_*` names used by the test suites, never warned about.
const NOT_SETTINGS_PREFIXES: &[&str] = &["GITSTORE_TEST_"];

/// Settings of the Go `gitstore-api` (and of `gitstore-git-service`, which often shares a
/// `.env`) that this server does not read, with what to do instead.
const GO_ONLY: &[(&str, &str)] = &[
    ("GITSTORE_GIT_GRPC", GIT_HINT),
    ("GITSTORE_GIT_WS", GIT_HINT),
    ("GITSTORE_GIT_HTTP_URL", GIT_HINT),
    ("GITSTORE_GIT_REPO", GIT_HINT),
    ("GITSTORE_GIT_SERVER_URL", GIT_HINT),
    ("GITSTORE_CACHE_TTL", CACHE_HINT),
    ("GITSTORE_HTTP_PORT", GIT_SERVICE_HINT),
    ("GITSTORE_WS_PORT", GIT_SERVICE_HINT),
    ("GITSTORE_GRPC_PORT", GIT_SERVICE_HINT),
    ("GITSTORE_DATA_DIR", GIT_SERVICE_HINT),
    ("GITSTORE_MAX_FILE_SIZE", GIT_SERVICE_HINT),
];
const GIT_HINT: &str = "this server does not talk to gitstore-git-service; the catalogue lives in \
     its own datastore (GITSTORE_DATASTORE_BACKEND)";
const CACHE_HINT: &str = "there is no read cache to tune; reads go to the datastore";
const GIT_SERVICE_HINT: &str = "a gitstore-git-service setting, not read by the API";

/// What the configuration files contribute, read before clap parses.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The files read, in the order read (e.g. `.env`, `config.toml`).
    pub files_read: Vec<String>,
    /// Values from the files by variable name (`.env` over the TOML file), for variables
    /// this binary reads.
    pub values: BTreeMap<String, String>,
    /// `GITSTORE_*` names (environment, `.env`, TOML) this binary does not read.
    pub ignored: BTreeSet<String>,
}

impl Sources {
    /// Reads `.env` and the TOML file relative to `cwd`, with `args` (the command line,
    /// program name first) and `env` (the process environment).
    ///
    /// # Errors
    /// A message naming the file (and line or key) when `.env` or the TOML file is
    /// malformed, an explicitly named TOML file is missing, or the TOML file has a key
    /// that is no setting.
    pub fn load(
        args: &[OsString],
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Self, String> {
        let known: BTreeSet<String> = env_var_names().into_iter().collect();
        let mut sources = Self::default();
        let dotenv = read_dotenv(&cwd.join(DOTENV_FILE))?;
        if let Some(pairs) = &dotenv {
            sources.files_read.push(DOTENV_FILE.to_owned());
            for name in pairs.keys() {
                if name.starts_with("GITSTORE_") && !known.contains(name) && !not_a_setting(name) {
                    sources.ignored.insert(name.clone());
                }
            }
        }
        let dotenv = dotenv.unwrap_or_default();
        let explicit = config_flag(args)
            .or_else(|| env.get(CONFIG_VAR).filter(|v| !v.is_empty()).cloned())
            .or_else(|| dotenv.get(CONFIG_VAR).filter(|v| !v.is_empty()).cloned());
        let toml_path = match &explicit {
            Some(path) => Some(cwd.join(path)),
            None => Some(cwd.join(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = toml_path {
            let shown = explicit.unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_owned());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the configuration file {shown}: {e}"))?;
            for (key, name, value) in toml_entries(&text).map_err(|e| format!("{shown}: {e}"))? {
                if known.contains(&name) && name != CONFIG_VAR {
                    sources.values.insert(name, value);
                } else if go_hint(&name).is_some() {
                    sources.ignored.insert(name);
                } else {
                    return Err(format!(
                        "{shown}: unknown key `{key}` (it would be {name}, which is no setting; \
                         see `gitstore-api --help`)"
                    ));
                }
            }
            sources.files_read.push(shown);
        }
        for (name, value) in dotenv {
            if known.contains(&name) && name != CONFIG_VAR {
                sources.values.insert(name, value);
            }
        }
        for name in env.keys() {
            if name.starts_with("GITSTORE_") && !known.contains(name) && !not_a_setting(name) {
                sources.ignored.insert(name.clone());
            }
        }
        Ok(sources)
    }

    /// The clap command with the file values as defaults (below the environment).
    #[must_use]
    pub fn command(&self) -> clap::Command {
        Cli::command().mut_args(|arg| {
            let value = arg
                .get_env()
                .and_then(|e| e.to_str())
                .and_then(|name| self.values.get(name))
                .cloned();
            match value {
                Some(v) => arg.default_value(v),
                None => arg,
            }
        })
    }

    /// The one startup line saying which files were read, or `None` when there were
    /// none (a plain start stays quiet, and a failing one prints only its error).
    #[must_use]
    pub fn files_line(&self) -> Option<String> {
        (!self.files_read.is_empty())
            .then(|| format!("configuration files read: {}", self.files_read.join(", ")))
    }

    /// The one startup warning about `GITSTORE_*` variables this binary does not read,
    /// or `None` when there are none.
    #[must_use]
    pub fn ignored_line(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .ignored
            .iter()
            .map(|name| match go_hint(name) {
                Some(hint) => format!("{name} ({hint})"),
                None => format!("{name} (unknown: a typo?)"),
            })
            .collect();
        Some(format!(
            "these GITSTORE_* settings have no effect here and are ignored: {}",
            names.join("; ")
        ))
    }
}

fn not_a_setting(name: &str) -> bool {
    NOT_SETTINGS.contains(&name) || NOT_SETTINGS_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// What to use instead of a setting of the Go services, when it is one.
fn go_hint(name: &str) -> Option<String> {
    if let Some((_, hint)) = GO_ONLY.iter().find(|(n, _)| *n == name) {
        return Some((*hint).to_owned());
    }
    // The later Go releases spell nesting with `__` (GITSTORE_LOG__LEVEL).
    if name.contains("__") {
        let single = name.replace("__", "_");
        if env_var_names().contains(&single) {
            return Some(format!("use {single}"));
        }
        if let Some((_, hint)) = GO_ONLY.iter().find(|(n, _)| *n == single) {
            return Some((*hint).to_owned());
        }
    }
    None
}

/// The value of `--config`/`--config-file` on the command line, if given.
fn config_flag(args: &[OsString]) -> Option<String> {
    let mut iter = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        for flag in ["--config", "--config-file"] {
            if arg == flag {
                return iter.next().map(str::to_owned);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// The pairs of a `.env` file, `None` when there is none.
fn read_dotenv(path: &Path) -> Result<Option<BTreeMap<String, String>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {DOTENV_FILE}: {e}")),
    };
    let mut pairs = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                pairs.insert(name, value);
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                let at = text.find(line.as_str()).map_or(0, |start| {
                    text[..start + index.min(line.len())].matches('\n').count()
                });
                return Err(format!(
                    "{DOTENV_FILE} line {}: cannot parse `{}`",
                    at + 1,
                    line.lines().next().unwrap_or_default()
                ));
            }
            Err(e) => return Err(format!("{DOTENV_FILE}: {e}")),
        }
    }
    Ok(Some(pairs))
}

/// A TOML document as variable-shaped pairs: `GITSTORE_API_PORT = 4000`, `api_port = 4000`
/// and `[api] port = 4000` all give `GITSTORE_API_PORT=4000`; arrays join with commas.
///
/// # Errors
/// The TOML parser's message (with line and column).
pub fn toml_values(text: &str) -> Result<Vec<(String, String)>, String> {
    Ok(toml_entries(text)?
        .into_iter()
        .map(|(_, name, value)| (name, value))
        .collect())
}

/// [`toml_values`] with each value's dotted key as written (`api.port`), for messages.
fn toml_entries(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    flatten(&table, "", &mut out)?;
    Ok(out)
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<(String, String, String)>,
) -> Result<(), String> {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let toml::Value::Table(inner) = value {
            flatten(inner, &dotted, out)?;
            continue;
        }
        let path = dotted.replace('.', "_").to_ascii_uppercase();
        let name = if path.starts_with("GITSTORE_") {
            path
        } else {
            format!("GITSTORE_{path}")
        };
        let value = scalar(value).map_err(|e| format!("{dotted}: {e}"))?;
        out.push((dotted, name, value));
    }
    Ok(())
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Table(_) => return Err("a table inside a list is no setting".to_owned()),
    })
}

/// Reads the sources for this process: its arguments, environment and working directory.
///
/// # Errors
/// As [`Sources::load`].
pub fn load_for_process() -> Result<Sources, String> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Sources::load(&args, &env, &cwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_of_every_shape_map_to_variables() {
        let pairs = toml_values(
            "GITSTORE_API_PORT = 4001\nlog_level = \"debug\"\n[api]\nhost = \"127.0.0.1\"\n\
             [datastore.scylla]\nhosts = [\"a:9042\", \"b:9042\"]\n",
        )
        .expect("parses");
        let map: BTreeMap<_, _> = pairs.into_iter().collect();
        assert_eq!(map["GITSTORE_API_PORT"], "4001");
        assert_eq!(map["GITSTORE_LOG_LEVEL"], "debug");
        assert_eq!(map["GITSTORE_API_HOST"], "127.0.0.1");
        assert_eq!(map["GITSTORE_DATASTORE_SCYLLA_HOSTS"], "a:9042,b:9042");
        assert!(toml_values("port = ").is_err());
    }

    #[test]
    fn the_config_flag_is_found_before_clap() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_flag(&args(&["x", "--config", "a.toml"])).as_deref(),
            Some("a.toml")
        );
        assert_eq!(
            config_flag(&args(&["x", "--config-file=b.toml"])).as_deref(),
            Some("b.toml")
        );
        assert_eq!(config_flag(&args(&["x", "--", "--config", "c"])), None);
        assert_eq!(config_flag(&args(&["x", "--configs"])), None);
    }

    #[test]
    fn go_settings_get_a_hint_and_typos_do_not() {
        assert!(go_hint("GITSTORE_CACHE_TTL").is_some());
        assert_eq!(
            go_hint("GITSTORE_LOG__LEVEL").as_deref(),
            Some("use GITSTORE_LOG_LEVEL")
        );
        assert!(go_hint("GITSTORE_API_PROT").is_none());
    }

    #[test]
    fn file_values_sit_between_the_environment_and_the_defaults() {
        let sources = Sources {
            values: [("GITSTORE_API_PORT".to_owned(), "4100".to_owned())].into(),
            ..Sources::default()
        };
        let matches = sources
            .command()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(["gitstore-api"])
            .expect("parses");
        assert_eq!(matches.get_one::<u16>("port"), Some(&4100));
    }
}
