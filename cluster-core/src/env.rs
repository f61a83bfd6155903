//! The environment's overrides of the core's settings: each
//! `CLUSTER_THREAD_*` variable of a core setting is read here, once, when
//! [`ClusterBuilder::build`](crate::ClusterBuilder::build) runs, for builder
//! and macro programs alike. (`cluster-net` reads its own,
//! `CLUSTER_THREAD_BALANCE`.)

use std::time::Duration;

use crate::{Error, Workers};

/// The environment variable that overrides the worker count (`auto` or an integer ≥ 1).
pub const WORKERS_ENV: &str = "CLUSTER_THREAD_WORKERS";

/// The variable that overrides [`ClusterBuilder::pin_workers`](crate::ClusterBuilder::pin_workers):
/// `1` or `true` pins, `0` or `false` does not.
pub const PIN_WORKERS_ENV: &str = "CLUSTER_THREAD_PIN_WORKERS";

/// The variable that overrides [`ClusterBuilder::drain_delay`](crate::ClusterBuilder::drain_delay):
/// a duration such as `2s` or `500ms` (`humantime`'s grammar, as the
/// macro's duration arguments).
pub const DRAIN_DELAY_ENV: &str = "CLUSTER_THREAD_DRAIN_DELAY";

/// The variable that overrides [`ClusterBuilder::shutdown_timeout`](crate::ClusterBuilder::shutdown_timeout):
/// a duration above zero, such as `30s` or `2m`.
pub const SHUTDOWN_TIMEOUT_ENV: &str = "CLUSTER_THREAD_SHUTDOWN_TIMEOUT";

/// Parses a duration as every setting of the cluster spells it (the
/// macro's arguments too): `humantime`'s grammar (`"30s"`, `"500ms"`,
/// `"1m 30s"`, `"1.5s"`, `"2 hours"`).
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// What the environment sets; `None` where a variable is unset.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub(crate) workers: Option<Workers>,
    pub(crate) pin_workers: Option<bool>,
    pub(crate) drain_delay: Option<Duration>,
    pub(crate) shutdown_timeout: Option<Duration>,
}

impl Overrides {
    /// Reads the variables of the process's environment.
    pub(crate) fn from_env() -> Result<Overrides, Error> {
        // A value that is not Unicode is shown (lossily) in the error it causes.
        Overrides::from_vars(|name| {
            std::env::var_os(name).map(|v| {
                v.into_string()
                    .unwrap_or_else(|v| v.to_string_lossy().into_owned())
            })
        })
    }

    /// Reads the variables from `var` (the value of a name, if set); an
    /// unusable value is an error naming the variable.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Overrides, Error> {
        fn read<T>(
            var: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            expected: &'static str,
            parse: impl Fn(&str) -> Option<T>,
        ) -> Result<Option<T>, Error> {
            var(name)
                .map(|value| {
                    parse(&value).ok_or(Error::BadEnv {
                        name,
                        value,
                        expected,
                    })
                })
                .transpose()
        }
        Ok(Overrides {
            workers: read(
                &var,
                WORKERS_ENV,
                "\"auto\" or an integer >= 1",
                Workers::parse,
            )?,
            pin_workers: read(&var, PIN_WORKERS_ENV, "1, true, 0 or false", |v| {
                match v.trim() {
                    "1" | "true" => Some(true),
                    "0" | "false" => Some(false),
                    _ => None,
                }
            })?,
            drain_delay: read(
                &var,
                DRAIN_DELAY_ENV,
                "a duration such as \"2s\", \"500ms\" or \"0s\"",
                parse_duration,
            )?,
            shutdown_timeout: read(
                &var,
                SHUTDOWN_TIMEOUT_ENV,
                "a duration above zero such as \"30s\" or \"2m\"",
                |v| parse_duration(v).filter(|d| !d.is_zero()),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Overrides, Error> {
        Overrides::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn unset_variables_override_nothing() {
        assert_eq!(read(&[]).ok(), Some(Overrides::default()));
    }

    #[test]
    fn each_variable_overrides_its_setting() {
        let overrides = read(&[
            (WORKERS_ENV, " 3 "),
            (PIN_WORKERS_ENV, "true"),
            (DRAIN_DELAY_ENV, " 1m 30s "),
            (SHUTDOWN_TIMEOUT_ENV, "10m"),
        ]);
        assert_eq!(
            overrides.ok(),
            Some(Overrides {
                workers: Some(Workers::Count(3)),
                pin_workers: Some(true),
                drain_delay: Some(Duration::from_secs(90)),
                shutdown_timeout: Some(Duration::from_secs(600)),
            })
        );
        for (value, ms) in [("2s", 2_000), ("500ms", 500), ("1.5s", 1_500), ("0s", 0)] {
            let delay = read(&[(DRAIN_DELAY_ENV, value)]).map(|o| o.drain_delay);
            assert_eq!(delay.ok(), Some(Some(Duration::from_millis(ms))), "{value}");
        }
        let auto = read(&[(WORKERS_ENV, "AUTO")]).map(|o| o.workers);
        assert_eq!(auto.ok(), Some(Some(Workers::Auto)));
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_and_what_it_accepts() {
        for (name, bad, expected) in [
            (WORKERS_ENV, "many", "\"auto\""),
            (PIN_WORKERS_ENV, "yes", "1, true"),
            (DRAIN_DELAY_ENV, "", "\"500ms\""),
            (DRAIN_DELAY_ENV, "2", "\"500ms\""),
            (DRAIN_DELAY_ENV, "soon", "\"500ms\""),
            (DRAIN_DELAY_ENV, "-1s", "\"500ms\""),
            (SHUTDOWN_TIMEOUT_ENV, "0s", "above zero"),
            (SHUTDOWN_TIMEOUT_ENV, "later", "above zero"),
        ] {
            match read(&[(name, bad)]) {
                Ok(o) => panic!("{name}={bad:?} accepted: {o:?}"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("{name}={bad:?}")), "{text}");
                    assert!(text.contains(expected), "{text}");
                }
            }
        }
    }
}
