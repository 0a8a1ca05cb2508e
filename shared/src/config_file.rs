//! The configuration file: YAML (the seed's `configs/config.yaml` shape) named by `--config
//! <path>` or `CONFIG_FILE`, read with figment. Each `section: {key: value}` pair is the
//! environment variable `SECTION_KEY` (nested sections join the same way, lists become
//! comma-separated), so the file can hold anything the environment can, and a variable that is
//! set overrides the file. Inside Lambda no file is needed: the environment alone configures.

use std::collections::BTreeMap;

use figment::{
    Figment,
    providers::{Format, Yaml},
};
use serde_json::Value;

use crate::config::ConfigError;

/// The variable naming the file when `--config` is not given.
pub const CONFIG_FILE_VAR: &str = "CONFIG_FILE";

/// Keys of the seed's file whose variable is spelled differently here.
const ALIASES: &[(&str, &str)] = &[("RABBITMQ_USERNAME", "RABBITMQ_USER")];

#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    pub path: String,
    /// Variable name -> (value, the key as the file wrote it).
    vars: BTreeMap<String, (String, String)>,
}

impl ConfigFile {
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let error = |reason: String| ConfigError {
            var: CONFIG_FILE_VAR,
            value: path.to_string(),
            reason,
        };
        // `file_exact`: a missing file is an error, not an empty configuration.
        let sections: serde_json::Map<String, Value> = Figment::from(Yaml::file_exact(path))
            .extract()
            .map_err(|e| error(e.to_string()))?;
        let mut vars = BTreeMap::new();
        for (key, value) in sections {
            flatten(&key, &key, &value, &mut vars).map_err(error)?;
        }
        Ok(Self {
            path: path.to_string(),
            vars,
        })
    }

    /// The file's value for an environment variable.
    pub fn get(&self, var: &str) -> Option<String> {
        self.vars.get(var).map(|(v, _)| v.clone())
    }

    /// `(variable, key as written)` of every value in the file.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars
            .iter()
            .map(|(var, (_, key))| (var.as_str(), key.as_str()))
    }
}

fn flatten(
    var: &str,
    key: &str,
    value: &Value,
    out: &mut BTreeMap<String, (String, String)>,
) -> Result<(), String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let text = match value {
        Value::Object(children) => {
            for (k, child) in children {
                flatten(&format!("{var}_{k}"), &format!("{key}.{k}"), child, out)?;
            }
            return Ok(());
        }
        // An empty value: as if unset.
        Value::Null => return Ok(()),
        Value::Array(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| format!("{key}: a list holds only plain values")))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => scalar(other).unwrap_or_default(),
    };
    let mut name = var.to_ascii_uppercase().replace(['-', '.'], "_");
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name) {
        name = (*to).to_string();
    }
    out.insert(name, (text, key.to_string()));
    Ok(())
}

/// Removes `--config <path>` (or `--config=<path>`) from `args` and returns the path.
pub fn take_config_arg(args: &mut Vec<String>) -> Option<String> {
    let i = args
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))?;
    let arg = args.remove(i);
    match arg.strip_prefix("--config=") {
        Some(path) => Some(path.to_string()),
        None if i < args.len() => Some(args.remove(i)),
        None => Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_args_are_taken_out_of_the_arguments() {
        let mut args: Vec<String> = ["--config", "a.yaml", "token", "--admin"]
            .map(String::from)
            .to_vec();
        assert_eq!(take_config_arg(&mut args).as_deref(), Some("a.yaml"));
        assert_eq!(args, ["token", "--admin"]);
        let mut args: Vec<String> = ["migrate", "--config=b.yaml"].map(String::from).to_vec();
        assert_eq!(take_config_arg(&mut args).as_deref(), Some("b.yaml"));
        assert_eq!(args, ["migrate"]);
        assert_eq!(take_config_arg(&mut vec!["migrate".into()]), None);
    }
}

#[cfg(test)]
mod file_tests {
    use std::collections::HashMap;

    use super::*;
    use crate::Config;

    /// The seed system's `configs/config.yaml`, as its users write it (a copy of the seed's file).
    const SEED: &str = include_str!("../tests/fixtures/seed-config.yaml");

    fn write(content: &str) -> tempfile_path::Path {
        tempfile_path::Path::with(content)
    }

    fn load(content: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = write(content);
        let file = ConfigFile::load(file.as_str())?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup_and_file(|k| env.get(k).cloned(), &file)
    }

    #[test]
    fn the_seeds_file_configures_every_section() {
        let c = load(SEED, &[]).unwrap();
        assert_eq!((c.server_host.as_str(), c.server_port), ("0.0.0.0", 8080));
        assert_eq!(
            c.database_url,
            "postgres://postgres:password@postgres:5432/multitenant_messaging"
        );
        assert_eq!(c.rabbitmq_url, "amqp://guest:guest@rabbitmq:5672/%2F");
        assert_eq!(
            (c.consumer.default_workers, c.consumer.max_workers),
            (3, 10)
        );
        assert_eq!(c.consumer.retry_attempts, 3);
        assert_eq!(c.consumer.retry_delay, std::time::Duration::from_secs(5));
        assert!(c.metrics_enabled);
        assert_eq!(c.metrics_path, "/metrics");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let c = load(
            SEED,
            &[
                ("SERVER_PORT", "9090"),
                ("DATABASE_URL", "postgres://u@db:5433/other"),
                ("CONSUMER_MAX_WORKERS", "20"),
            ],
        )
        .unwrap();
        assert_eq!(c.server_port, 9090);
        assert_eq!(c.database_url, "postgres://u@db:5433/other");
        assert_eq!(c.consumer.max_workers, 20);
        assert_eq!(c.consumer.default_workers, 3, "the file's, where unset");
    }

    #[test]
    fn any_variable_can_be_written_as_a_section_key() {
        let c = load(
            "relay:\n  interval: 7s\ncors:\n  allowed_origins: [\"https://a.example\", \"https://b.example\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.relay.interval, std::time::Duration::from_secs(7));
        assert_eq!(
            c.cors_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let err = load("server:\n  prot: 8080\n", &[]).unwrap_err();
        assert_eq!(err.var, CONFIG_FILE_VAR);
        assert!(err.reason.contains("server.prot"), "{err}");
        let err = load("server:\n  port: eighty\n", &[]).unwrap_err();
        assert_eq!(err.var, "SERVER_PORT", "{err}");
        let err = load("server: [1, 2\n", &[]).unwrap_err();
        assert_eq!(err.var, CONFIG_FILE_VAR, "{err}");
        let err = ConfigFile::load("/nonexistent/config.yaml").unwrap_err();
        assert_eq!(err.var, CONFIG_FILE_VAR, "{err}");
        let err = load("- just\n- a list\n", &[]).unwrap_err();
        assert!(err.reason.contains("expected a map"), "{err}");
    }

    /// A file in the temporary directory, removed on drop.
    mod tempfile_path {
        pub struct Path(std::path::PathBuf);

        impl Path {
            pub fn with(content: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "msgsvc-config-{}.yaml",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::write(&p, content).unwrap();
                Self(p)
            }

            pub fn as_str(&self) -> &str {
                self.0.to_str().unwrap()
            }
        }

        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}
