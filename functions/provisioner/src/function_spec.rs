//! What a tenant function copies from the template function: its code (by `CodeSha256`), its
//! architectures and the settings below. Pure: read from a `FunctionConfiguration`, compared,
//! digested, and turned into the CreateFunction / UpdateFunctionConfiguration fields.
//!
//! Not copied: the log group (a tenant function keeps its own, `/aws/lambda/<name>`), the
//! description and tags (they name the tenant), reserved concurrency (the tenant's capacity).

use std::collections::BTreeMap;

use aws_sdk_lambda::types::{
    Architecture, Environment, EphemeralStorage, FunctionConfiguration, LogFormat, LoggingConfig,
    Runtime, VpcConfig,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The settings UpdateFunctionConfiguration changes (and CreateFunction sets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub memory_size: Option<i32>,
    pub timeout: Option<i32>,
    pub environment: BTreeMap<String, String>,
    pub ephemeral_storage_mb: Option<i32>,
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    /// Sorted; empty: no VPC.
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

/// A function's version as far as a rollout cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionSpec {
    pub code_sha256: Option<String>,
    /// Changed with the code (UpdateFunctionCode takes them), not the configuration.
    pub architectures: Vec<String>,
    pub settings: Settings,
}

impl FunctionSpec {
    pub fn from_configuration(c: &FunctionConfiguration) -> Self {
        let mut environment = BTreeMap::new();
        if let Some(vars) = c.environment().and_then(|e| e.variables()) {
            environment.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let vpc = c
            .vpc_config()
            .filter(|v| v.vpc_id().is_some_and(|id| !id.is_empty()));
        let sorted = |ids: &[String]| {
            let mut ids = ids.to_vec();
            ids.sort();
            ids
        };
        let logging = c.logging_config();
        Self {
            code_sha256: c.code_sha256().map(str::to_string),
            architectures: c
                .architectures()
                .iter()
                .map(|a| a.as_str().to_string())
                .collect(),
            settings: Settings {
                runtime: c.runtime().map(|r| r.as_str().to_string()),
                handler: c.handler().map(str::to_string),
                role: c.role().map(str::to_string),
                memory_size: c.memory_size(),
                timeout: c.timeout(),
                environment,
                ephemeral_storage_mb: c.ephemeral_storage().map(|e| e.size()),
                log_format: logging
                    .and_then(|l| l.log_format())
                    .map(|f| f.as_str().into()),
                application_log_level: logging
                    .and_then(|l| l.application_log_level())
                    .map(|l| l.as_str().into()),
                system_log_level: logging
                    .and_then(|l| l.system_log_level())
                    .map(|l| l.as_str().into()),
                subnet_ids: vpc.map(|v| sorted(v.subnet_ids())).unwrap_or_default(),
                security_group_ids: vpc
                    .map(|v| sorted(v.security_group_ids()))
                    .unwrap_or_default(),
            },
        }
    }

    /// A short digest of everything but the code hash, stored next to it as the version.
    pub fn config_digest(&self) -> String {
        let json =
            serde_json::to_vec(&(&self.architectures, &self.settings)).expect("settings serialise");
        let hash = Sha256::digest(&json);
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The steps that bring `current` to `self` (the template): UpdateFunctionCode when the
    /// code or the architectures differ, UpdateFunctionConfiguration with the settings that
    /// differ. Empty: up to date.
    pub fn plan(&self, current: &FunctionSpec) -> Plan {
        Plan {
            code: self.code_sha256 != current.code_sha256
                || self.architectures != current.architectures,
            settings: self.settings.differing(&current.settings),
        }
    }

    /// The architecture the code is built for (Lambda takes exactly one).
    pub fn architecture(&self) -> Option<Architecture> {
        self.architectures
            .first()
            .map(|a| Architecture::from(a.as_str()))
    }
}

/// What a rollout changes on one function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub code: bool,
    /// Names of the settings that differ.
    pub settings: Vec<&'static str>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        !self.code && self.settings.is_empty()
    }
}

impl Settings {
    fn differing(&self, other: &Settings) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                out.push(name)
            }
        };
        check("runtime", self.runtime != other.runtime);
        check("handler", self.handler != other.handler);
        check("role", self.role != other.role);
        check("memory_size", self.memory_size != other.memory_size);
        check("timeout", self.timeout != other.timeout);
        check("environment", self.environment != other.environment);
        check(
            "ephemeral_storage",
            self.ephemeral_storage_mb.is_some()
                && self.ephemeral_storage_mb != other.ephemeral_storage_mb,
        );
        check(
            "logging",
            (
                &self.log_format,
                &self.application_log_level,
                &self.system_log_level,
            ) != (
                &other.log_format,
                &other.application_log_level,
                &other.system_log_level,
            ),
        );
        check(
            "vpc",
            (&self.subnet_ids, &self.security_group_ids)
                != (&other.subnet_ids, &other.security_group_ids),
        );
        out
    }

    pub fn runtime(&self) -> Option<Runtime> {
        self.runtime.as_deref().map(Runtime::from)
    }

    pub fn environment(&self) -> Environment {
        Environment::builder()
            .set_variables(Some(self.environment.clone().into_iter().collect()))
            .build()
    }

    pub fn ephemeral_storage(&self) -> Option<EphemeralStorage> {
        self.ephemeral_storage_mb
            .and_then(|size| EphemeralStorage::builder().size(size).build().ok())
    }

    /// The template's log format and levels; `None` when it has no logging config.
    pub fn logging(&self) -> Option<LoggingConfig> {
        if self.log_format.is_none()
            && self.application_log_level.is_none()
            && self.system_log_level.is_none()
        {
            return None;
        }
        Some(
            LoggingConfig::builder()
                .set_log_format(self.log_format.as_deref().map(LogFormat::from))
                .set_application_log_level(self.application_log_level.as_deref().map(Into::into))
                .set_system_log_level(self.system_log_level.as_deref().map(Into::into))
                .build(),
        )
    }

    /// The VPC config to set: the template's subnets and groups, or empty lists, which detach
    /// a function from its VPC (UpdateFunctionConfiguration).
    pub fn vpc(&self) -> VpcConfig {
        VpcConfig::builder()
            .set_subnet_ids(Some(self.subnet_ids.clone()))
            .set_security_group_ids(Some(self.security_group_ids.clone()))
            .build()
    }

    pub fn has_vpc(&self) -> bool {
        !self.subnet_ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::types::{EnvironmentResponse, VpcConfigResponse};

    use super::*;

    fn conf(code: &str, env: &[(&str, &str)], memory: i32) -> FunctionConfiguration {
        let mut e = EnvironmentResponse::builder();
        for (k, v) in env {
            e = e.variables(*k, *v);
        }
        FunctionConfiguration::builder()
            .code_sha256(code)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role("arn:aws:iam::000000000000:role/consumer")
            .memory_size(memory)
            .timeout(60)
            .architectures(Architecture::Arm64)
            .environment(e.build())
            .ephemeral_storage(EphemeralStorage::builder().size(512).build().unwrap())
            .build()
    }

    #[test]
    fn equal_functions_need_nothing() {
        let a = FunctionSpec::from_configuration(&conf("c1", &[("A", "1"), ("B", "2")], 256));
        let b = FunctionSpec::from_configuration(&conf("c1", &[("B", "2"), ("A", "1")], 256));
        assert!(a.plan(&b).is_empty());
        assert_eq!(a.config_digest(), b.config_digest());
    }

    #[test]
    fn code_and_settings_are_planned_separately() {
        let template = FunctionSpec::from_configuration(&conf("c2", &[("A", "2")], 512));
        let tenant = FunctionSpec::from_configuration(&conf("c1", &[("A", "1")], 256));
        let plan = template.plan(&tenant);
        assert!(plan.code);
        assert_eq!(plan.settings, vec!["memory_size", "environment"]);
        assert_ne!(template.config_digest(), tenant.config_digest());

        let same_code = FunctionSpec::from_configuration(&conf("c2", &[("A", "1")], 512));
        assert_eq!(
            template.plan(&same_code),
            Plan {
                code: false,
                settings: vec!["environment"]
            }
        );
    }

    #[test]
    fn a_vpc_without_an_id_is_no_vpc_and_ids_compare_unordered() {
        let with = |subnets: &[&str], vpc: &str| {
            let mut c = conf("c1", &[], 256);
            c.vpc_config = Some(
                VpcConfigResponse::builder()
                    .set_subnet_ids(Some(subnets.iter().map(|s| s.to_string()).collect()))
                    .security_group_ids("sg-1")
                    .vpc_id(vpc)
                    .build(),
            );
            FunctionSpec::from_configuration(&c)
        };
        let none = FunctionSpec::from_configuration(&conf("c1", &[], 256));
        // GetFunction answers an empty VpcConfig (no VpcId) for a function outside any VPC.
        assert!(none.plan(&with(&[], "")).is_empty());
        assert!(
            with(&["s-1", "s-2"], "vpc-1")
                .plan(&with(&["s-2", "s-1"], "vpc-1"))
                .is_empty()
        );
        assert_eq!(
            none.plan(&with(&["s-1"], "vpc-1")).settings,
            vec!["vpc"],
            "leaving the VPC is a change too"
        );
    }
}
