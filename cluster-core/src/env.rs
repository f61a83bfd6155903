//! The environment's overrides of the core's settings: each
//! `CLUSTER_THREAD_*` variable of a core setting is read here, once, when
//! [`ClusterBuilder::build`](crate::ClusterBuilder::build) runs, for builder
//! and macro programs alike. (`cluster-net` reads its own,
//! `CLUSTER_THREAD_BALANCE`.) `docs/settings.md` lists every setting with
//! its variable.

use std::time::Duration;

use crate::signals::{parse_entries, SignalEntry};
use crate::{Error, RestartPolicy, Workers};

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

/// The variable that overrides [`ClusterBuilder::kill_timeout`](crate::ClusterBuilder::kill_timeout):
/// a duration above zero.
pub const KILL_TIMEOUT_ENV: &str = "CLUSTER_THREAD_KILL_TIMEOUT";

/// The variable that overrides [`ClusterBuilder::listen_timeout`](crate::ClusterBuilder::listen_timeout):
/// a duration.
pub const LISTEN_TIMEOUT_ENV: &str = "CLUSTER_THREAD_LISTEN_TIMEOUT";

/// The variable that overrides [`ClusterBuilder::wait_ready`](crate::ClusterBuilder::wait_ready):
/// `1`, `true`, `0` or `false`.
pub const WAIT_READY_ENV: &str = "CLUSTER_THREAD_WAIT_READY";

/// The variable that overrides [`ClusterBuilder::restart`](crate::ClusterBuilder::restart):
/// `never`, `on-failure` or `always`.
pub const RESTART_ENV: &str = "CLUSTER_THREAD_RESTART";

/// The variable that overrides [`ClusterBuilder::restart_delay`](crate::ClusterBuilder::restart_delay):
/// a duration.
pub const RESTART_DELAY_ENV: &str = "CLUSTER_THREAD_RESTART_DELAY";

/// The variable that overrides [`ClusterBuilder::min_uptime`](crate::ClusterBuilder::min_uptime):
/// a duration.
pub const MIN_UPTIME_ENV: &str = "CLUSTER_THREAD_MIN_UPTIME";

/// The variable that overrides [`ClusterBuilder::max_restarts`](crate::ClusterBuilder::max_restarts):
/// an integer.
pub const MAX_RESTARTS_ENV: &str = "CLUSTER_THREAD_MAX_RESTARTS";

/// The variable that overrides [`ClusterBuilder::stack_size`](crate::ClusterBuilder::stack_size):
/// bytes, or a size such as `512KiB`, `8MiB`, `1GiB`.
pub const STACK_SIZE_ENV: &str = "CLUSTER_THREAD_STACK_SIZE";

/// The variable that changes signals' actions after the program's own
/// ([`ClusterBuilder::on_signal`](crate::ClusterBuilder::on_signal)):
/// `signal=action` entries, applied in order, as the macro's `signals`
/// (`"usr2=upgrade, hup=off"`, `"all=off"`).
pub const SIGNALS_ENV: &str = "CLUSTER_THREAD_SIGNALS";

/// The variable that overrides [`ClusterBuilder::user`](crate::ClusterBuilder::user):
/// a user name.
pub const USER_ENV: &str = "CLUSTER_THREAD_USER";

/// The variable that overrides [`ClusterBuilder::group`](crate::ClusterBuilder::group):
/// a group name.
pub const GROUP_ENV: &str = "CLUSTER_THREAD_GROUP";

/// A user or group name as `user` and `group` take it: not empty, letters,
/// digits, `.`, `_`, `-` (not first) and a final `$`, as `useradd` allows.
pub(crate) fn parse_name(text: &str) -> Option<String> {
    let text = text.trim();
    let body = text.strip_suffix('$').unwrap_or(text);
    let ok = !body.is_empty()
        && !body.starts_with('-')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then(|| text.to_owned())
}

/// Parses a duration as every setting of the cluster spells it (the
/// macro's arguments too): `humantime`'s grammar (`"30s"`, `"500ms"`,
/// `"1m 30s"`, `"1.5s"`, `"2 hours"`).
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// Parses a size in bytes as the macro's `stack_size` spells it: an
/// integer, alone (bytes) or with `KiB`, `MiB` or `GiB` (case and a space
/// before the unit optional); above zero.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        _ => return None,
    };
    let n: usize = number.parse().ok()?;
    n.checked_mul(1 << shift).filter(|&bytes| bytes > 0)
}

/// `1` or `true`, `0` or `false`.
fn flag(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// What the environment sets; `None` where a variable is unset.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub(crate) workers: Option<Workers>,
    pub(crate) pin_workers: Option<bool>,
    pub(crate) drain_delay: Option<Duration>,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) kill_timeout: Option<Duration>,
    pub(crate) listen_timeout: Option<Duration>,
    pub(crate) wait_ready: Option<bool>,
    pub(crate) restart: Option<RestartPolicy>,
    pub(crate) restart_delay: Option<Duration>,
    pub(crate) min_uptime: Option<Duration>,
    pub(crate) max_restarts: Option<u32>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) signals: Option<Vec<SignalEntry>>,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
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
        const DURATION: &str = "a duration such as \"2s\", \"500ms\" or \"0s\"";
        const ABOVE_ZERO: &str = "a duration above zero such as \"30s\" or \"2m\"";
        const NAME: &str = "a name of letters, digits, '.', '_' and '-'";
        let above_zero = |v: &str| parse_duration(v).filter(|d| !d.is_zero());
        Ok(Overrides {
            workers: read(
                &var,
                WORKERS_ENV,
                "\"auto\" or an integer >= 1",
                Workers::parse,
            )?,
            pin_workers: read(&var, PIN_WORKERS_ENV, "1, true, 0 or false", flag)?,
            wait_ready: read(&var, WAIT_READY_ENV, "1, true, 0 or false", flag)?,
            drain_delay: read(&var, DRAIN_DELAY_ENV, DURATION, parse_duration)?,
            shutdown_timeout: read(&var, SHUTDOWN_TIMEOUT_ENV, ABOVE_ZERO, above_zero)?,
            kill_timeout: read(&var, KILL_TIMEOUT_ENV, ABOVE_ZERO, above_zero)?,
            listen_timeout: read(&var, LISTEN_TIMEOUT_ENV, DURATION, parse_duration)?,
            restart: read(
                &var,
                RESTART_ENV,
                "never, on-failure or always",
                RestartPolicy::parse,
            )?,
            restart_delay: read(&var, RESTART_DELAY_ENV, DURATION, parse_duration)?,
            min_uptime: read(&var, MIN_UPTIME_ENV, DURATION, parse_duration)?,
            max_restarts: read(&var, MAX_RESTARTS_ENV, "an integer >= 0", |v| {
                v.trim().parse().ok()
            })?,
            stack_size: read(
                &var,
                STACK_SIZE_ENV,
                "a size above zero in bytes, or such as \"512KiB\", \"8MiB\"",
                parse_size,
            )?,
            signals: read(
                &var,
                SIGNALS_ENV,
                "signal=action entries separated by commas, such as \"usr2=upgrade, hup=off\"",
                parse_entries,
            )?,
            user: read(&var, USER_ENV, NAME, parse_name)?,
            group: read(&var, GROUP_ENV, NAME, parse_name)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Signal, SignalAction};

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
                ..Overrides::default()
            })
        );
        let more = read(&[
            (KILL_TIMEOUT_ENV, "2s"),
            (LISTEN_TIMEOUT_ENV, "0s"),
            (WAIT_READY_ENV, "1"),
            (RESTART_ENV, "always"),
            (RESTART_DELAY_ENV, "250ms"),
            (MIN_UPTIME_ENV, "5s"),
            (MAX_RESTARTS_ENV, "0"),
            (STACK_SIZE_ENV, "8 MiB"),
            (USER_ENV, " www-data "),
            (GROUP_ENV, "web"),
            (SIGNALS_ENV, "all=off, SIGUSR2 = upgrade,hup=stop_now"),
        ]);
        assert_eq!(
            more.ok(),
            Some(Overrides {
                kill_timeout: Some(Duration::from_secs(2)),
                listen_timeout: Some(Duration::ZERO),
                wait_ready: Some(true),
                restart: Some(RestartPolicy::Always),
                restart_delay: Some(Duration::from_millis(250)),
                min_uptime: Some(Duration::from_secs(5)),
                max_restarts: Some(0),
                stack_size: Some(8 << 20),
                user: Some("www-data".into()),
                group: Some("web".into()),
                signals: Some(vec![
                    (None, SignalAction::Off),
                    (Some(Signal::Usr2), SignalAction::Upgrade),
                    (Some(Signal::Hup), SignalAction::StopNow),
                ]),
                ..Overrides::default()
            })
        );
        for (text, bytes) in [("65536", 65_536), ("512KiB", 512 << 10), ("1gib", 1 << 30)] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for text in ["", "0", "8MB", "-1", "1.5MiB", "99999999999999999999GiB"] {
            assert_eq!(parse_size(text), None, "{text}");
        }
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
            (WAIT_READY_ENV, "on", "1, true"),
            (DRAIN_DELAY_ENV, "", "\"500ms\""),
            (DRAIN_DELAY_ENV, "2", "\"500ms\""),
            (DRAIN_DELAY_ENV, "soon", "\"500ms\""),
            (DRAIN_DELAY_ENV, "-1s", "\"500ms\""),
            (SHUTDOWN_TIMEOUT_ENV, "0s", "above zero"),
            (SHUTDOWN_TIMEOUT_ENV, "later", "above zero"),
            (KILL_TIMEOUT_ENV, "0s", "above zero"),
            (LISTEN_TIMEOUT_ENV, "3", "\"500ms\""),
            (RESTART_ENV, "sometimes", "on-failure"),
            (MIN_UPTIME_ENV, "1 fortnight", "\"500ms\""),
            (MAX_RESTARTS_ENV, "-1", "integer"),
            (STACK_SIZE_ENV, "8MB", "\"8MiB\""),
            (SIGNALS_ENV, "winch=stop", "usr2=upgrade"),
            (SIGNALS_ENV, "hup=explode", "usr2=upgrade"),
            (USER_ENV, "", "letters, digits"),
            (USER_ENV, "root:root", "letters, digits"),
            (GROUP_ENV, "-web", "letters, digits"),
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
