//! The attribute's arguments: `#[cluster_thread::main(key = value, ...)]`.
//!
//! Every argument is checked here, at compile time; a wrong one is an error
//! at its own span that says what is accepted. All errors are collected, so
//! one build reports every wrong argument.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

/// The keys the attribute takes, in the order the docs list them.
pub(crate) const KEYS: [&str; 30] = [
    "workers",
    "port",
    "balance",
    "restart",
    "restart_delay",
    "min_uptime",
    "max_restarts",
    "shutdown_timeout",
    "kill_timeout",
    "listen_timeout",
    "wait_ready",
    "drain_delay",
    "max_memory",
    "signals",
    "pin_workers",
    "stack_size",
    "max_connections",
    "connection_cap",
    "on_panic",
    "healthz",
    "metrics",
    "status",
    "control",
    "global_allocator",
    "log",
    "user",
    "group",
    "setup",
    "primary",
    "crate",
];

/// One of a fixed set of values: the name the attribute takes and the
/// variant of the runtime's enum it expands to, `__private::<enum>::<variant>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub(crate) name: &'static str,
    pub(crate) variant: &'static str,
}

const fn choice(name: &'static str, variant: &'static str) -> Choice {
    Choice { name, variant }
}

/// Values of `port`: `cluster_net::Ports`.
pub(crate) const PORTS: [Choice; 2] = [
    choice("shared", "Shared"),
    choice("per-worker", "PerWorker"),
];
/// Values of `balance`: `cluster_net::Balance`, spelt as its `name()` (a
/// test checks that both lists agree).
pub(crate) const BALANCES: [Choice; 5] = [
    choice("round-robin", "RoundRobin"),
    choice("least-connections", "LeastConnections"),
    choice("os", "Os"),
    choice("reuseport", "ReusePort"),
    choice("sticky", "Sticky"),
];
/// Values of `restart`: `cluster_core::RestartPolicy`.
pub(crate) const RESTARTS: [Choice; 3] = [
    choice("never", "Never"),
    choice("on-failure", "OnFailure"),
    choice("always", "Always"),
];
/// The signals of `signals`: `cluster_core::Signal`, spelt as its
/// `name()` without `SIG`, in lower case (both are optional in the value).
pub(crate) const SIGNALS: [Choice; 6] = [
    choice("term", "Term"),
    choice("int", "Int"),
    choice("hup", "Hup"),
    choice("quit", "Quit"),
    choice("usr1", "Usr1"),
    choice("usr2", "Usr2"),
];
/// The actions of `signals`: `cluster_core::SignalAction`, spelt as its `name()`.
pub(crate) const SIGNAL_ACTIONS: [Choice; 7] = [
    choice("stop", "Stop"),
    choice("interrupt", "Interrupt"),
    choice("stop-now", "StopNow"),
    choice("reload", "Reload"),
    choice("upgrade", "Upgrade"),
    choice("ignore", "Ignore"),
    choice("off", "Off"),
];

/// One entry of `signals`: a signal (`None`: `all`) and its action.
pub(crate) type SignalEntry = (Option<Choice>, Choice);

/// Values of `on_panic`: `cluster_http::OnPanic`, spelt as its `name()`.
pub(crate) const ON_PANICS: [Choice; 2] =
    [choice("ignore", "Ignore"), choice("restart", "Restart")];

/// Values of `log`: the default subscriber's level, or off.
pub(crate) const LOGS: [Choice; 6] = [
    choice("off", "off"),
    choice("error", "error"),
    choice("warn", "warn"),
    choice("info", "info"),
    choice("debug", "debug"),
    choice("trace", "trace"),
];

/// `workers`: `cluster_core::Workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerCount {
    Auto,
    Count(usize),
}

/// A value the attribute gave, and where: errors about what it expands to
/// point there.
#[derive(Debug, Clone)]
pub(crate) struct Given<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

impl<T> Given<T> {
    fn at(value: T, span: Span) -> Given<T> {
        Given { value, span }
    }
}

/// The arguments, checked. `None`: not given, so the runtime's own default
/// applies (the expansion sets only what the attribute says).
#[derive(Debug, Clone, Default)]
pub(crate) struct Args {
    pub(crate) workers: Option<Given<WorkerCount>>,
    pub(crate) port: Option<Given<Choice>>,
    pub(crate) balance: Option<Given<Choice>>,
    pub(crate) restart: Option<Given<Choice>>,
    pub(crate) restart_delay: Option<Given<Duration>>,
    pub(crate) min_uptime: Option<Given<Duration>>,
    pub(crate) max_restarts: Option<Given<u64>>,
    pub(crate) shutdown_timeout: Option<Given<Duration>>,
    pub(crate) kill_timeout: Option<Given<Duration>>,
    pub(crate) listen_timeout: Option<Given<Duration>>,
    pub(crate) drain_delay: Option<Given<Duration>>,
    /// `max_memory`, in bytes.
    pub(crate) max_memory: Option<Given<u64>>,
    pub(crate) signals: Option<Given<Vec<SignalEntry>>>,
    pub(crate) pin_workers: Option<Given<bool>>,
    pub(crate) wait_ready: Option<Given<bool>>,
    /// Bytes.
    pub(crate) stack_size: Option<Given<u64>>,
    pub(crate) max_connections: Option<Given<u64>>,
    pub(crate) connection_cap: Option<Given<u64>>,
    pub(crate) on_panic: Option<Given<Choice>>,
    /// The HTTP endpoints' paths: `healthz`, `metrics`, `status`.
    pub(crate) healthz: Option<Given<String>>,
    pub(crate) metrics: Option<Given<String>>,
    pub(crate) status: Option<Given<String>>,
    /// Whether the control socket opens.
    pub(crate) control: Option<Given<bool>>,
    /// `false`: the program keeps its own `#[global_allocator]`.
    pub(crate) global_allocator: Option<Given<bool>>,
    /// The default logs' level (a `LOGS` name).
    pub(crate) log: Option<Given<Choice>>,
    /// The user and group the process switches to once it listens.
    pub(crate) user: Option<Given<String>>,
    pub(crate) group: Option<Given<String>>,
    /// The function that builds the shared state, if any.
    pub(crate) setup: Option<Path>,
    /// The function run on the primary, if any.
    pub(crate) primary: Option<Path>,
    /// The path of the facade crate, if not the default `::cluster_thread`.
    pub(crate) krate: Option<Path>,
}

impl Args {
    /// Parses the attribute's arguments. Returns them with every wrong one
    /// left out, and the errors if any, so that the caller can still expand
    /// to something close to the real output.
    pub(crate) fn parse(tokens: TokenStream) -> (Args, Option<syn::Error>) {
        let entries = match Parser::parse2(parse_entries, tokens) {
            Ok(entries) => entries,
            Err(e) => return (Args::default(), Some(e)),
        };
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        let mut seen: Vec<String> = Vec::new();
        // The endpoint paths so far, to refuse one path for two endpoints.
        let mut paths: Vec<(&'static str, String)> = Vec::new();
        for (key, value) in entries {
            let name = key.unraw().to_string();
            if !KEYS.contains(&name.as_str()) {
                push(unknown_key(&key, &name));
                continue;
            }
            if seen.contains(&name) {
                push(syn::Error::new(
                    key.span(),
                    format!("duplicate argument `{name}`: each argument may be given once"),
                ));
                continue;
            }
            seen.push(name.clone());
            let result = match name.as_str() {
                "workers" => workers(&value).map(|w| args.workers = Some(w)),
                "port" => one_of(&name, &value, &PORTS).map(|v| args.port = Some(v)),
                "balance" => one_of(&name, &value, &BALANCES).map(|v| args.balance = Some(v)),
                "restart" => one_of(&name, &value, &RESTARTS).map(|v| args.restart = Some(v)),
                "shutdown_timeout" => {
                    shutdown_timeout(&value).map(|ms| args.shutdown_timeout = Some(ms))
                }
                "kill_timeout" => {
                    duration(&name, &value, true).map(|d| args.kill_timeout = Some(d))
                }
                "listen_timeout" => {
                    duration(&name, &value, false).map(|d| args.listen_timeout = Some(d))
                }
                "restart_delay" => {
                    duration(&name, &value, false).map(|d| args.restart_delay = Some(d))
                }
                "min_uptime" => duration(&name, &value, false).map(|d| args.min_uptime = Some(d)),
                "drain_delay" => drain_delay(&value).map(|ms| args.drain_delay = Some(ms)),
                "max_memory" => max_memory(&value).map(|b| args.max_memory = Some(b)),
                "signals" => signals(&value).map(|v| args.signals = Some(v)),
                "max_restarts" => integer(&name, &value, 0, u64::from(u32::MAX))
                    .map(|n| args.max_restarts = Some(n)),
                "max_connections" => integer(&name, &value, 1, usize::MAX as u64)
                    .map(|n| args.max_connections = Some(n)),
                "connection_cap" => integer(&name, &value, 1, usize::MAX as u64)
                    .map(|n| args.connection_cap = Some(n)),
                "stack_size" => stack_size(&value).map(|n| args.stack_size = Some(n)),
                "wait_ready" => flag(
                    &name,
                    &value,
                    "`wait_ready = true`: a worker is ready at `worker.ready()`, not when it listens",
                )
                .map(|b| args.wait_ready = Some(b)),
                "pin_workers" => flag(
                    &name,
                    &value,
                    "`pin_workers = true` pins slot i's thread to the i-th CPU",
                )
                .map(|b| args.pin_workers = Some(b)),
                "on_panic" => one_of(&name, &value, &ON_PANICS).map(|v| args.on_panic = Some(v)),
                "healthz" | "metrics" | "status" => {
                    let key: &'static str = match name.as_str() {
                        "healthz" => "healthz",
                        "metrics" => "metrics",
                        _ => "status",
                    };
                    endpoint_path(key, &value, &paths).map(|p| {
                        paths.push((key, p.value.clone()));
                        match key {
                            "healthz" => args.healthz = Some(p),
                            "metrics" => args.metrics = Some(p),
                            _ => args.status = Some(p),
                        }
                    })
                }
                "control" => flag(&name, &value, "`control = false` opens no control socket")
                    .map(|c| args.control = Some(c)),
                "global_allocator" => flag(
                    &name,
                    &value,
                    "`global_allocator = false` keeps the program's own `#[global_allocator]`",
                )
                .map(|g| args.global_allocator = Some(g)),
                "log" => one_of(&name, &value, &LOGS).map(|v| args.log = Some(v)),
                "user" => identity("user", &value).map(|v| args.user = Some(v)),
                "group" => identity("group", &value).map(|v| args.group = Some(v)),
                "setup" => setup(&value).map(|p| args.setup = Some(p)),
                "primary" => primary(&value).map(|p| args.primary = Some(p)),
                _ => krate(&value).map(|p| args.krate = Some(p)),
            };
            if let Err(e) = result {
                push(e);
            }
        }
        (args, errors)
    }
}

/// `key = value, ...`, with an optional trailing comma.
fn parse_entries(input: ParseStream<'_>) -> syn::Result<Vec<(Ident, Expr)>> {
    let mut entries = Vec::new();
    while !input.is_empty() {
        let key = if input.peek(Ident::peek_any) {
            input.call(Ident::parse_any)?
        } else {
            return Err(input.error(format!(
                "expected an argument `key = value`; the keys are {}",
                list(&KEYS, "`")
            )));
        };
        if !input.peek(Token![=]) {
            let name = key.unraw().to_string();
            let msg = if KEYS.contains(&name.as_str()) {
                format!("expected `{name} = ...`: the argument `{name}` needs a value")
            } else {
                format!(
                    "expected `key = value` arguments; the keys are {}",
                    list(&KEYS, "`")
                )
            };
            return Err(syn::Error::new(key.span(), msg));
        }
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        entries.push((key, value));
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(entries)
}

fn unknown_key(key: &Ident, name: &str) -> syn::Error {
    let squash = |s: &str| {
        s.to_ascii_lowercase()
            .replace(['_', '-'], "")
            .trim_end_matches('s')
            .to_owned()
    };
    let hint = KEYS
        .iter()
        .find(|k| squash(k) == squash(name))
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    syn::Error::new(
        key.span(),
        format!(
            "unknown argument `{name}`{hint}; expected one of {}",
            list(&KEYS, "`")
        ),
    )
}

/// `a`, `b` and `c`, each wrapped in `quote`.
fn list(items: &[&str], quote: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{quote}{i}{quote}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Lower case, `_` and ` ` as `-`: to suggest the accepted spelling.
fn normalize(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .replace(['_', ' '], "-")
        .replace("roundrobin", "round-robin")
}

/// The expression without the invisible groups of `macro_rules!` fragments.
fn ungroup(mut value: &Expr) -> &Expr {
    while let Expr::Group(g) = value {
        value = &g.expr;
    }
    value
}

fn lit(value: &Expr) -> Option<&Lit> {
    match ungroup(value) {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        _ => None,
    }
}

/// The text of a bare identifier, such as `shared` in `port = shared`.
fn bare_ident(value: &Expr) -> Option<String> {
    match ungroup(value) {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().map(|i| i.unraw().to_string()),
        _ => None,
    }
}

/// One of a fixed set of strings.
fn one_of(name: &str, value: &Expr, accepted: &[Choice]) -> syn::Result<Given<Choice>> {
    let names: Vec<&str> = accepted.iter().map(|c| c.name).collect();
    let expected = if names.len() > 2 {
        format!("one of {}", list(&names, "\""))
    } else {
        list(&names, "\"")
    };
    let found = match lit(value) {
        Some(Lit::Str(s)) => {
            let text = s.value();
            if let Some(c) = accepted.iter().find(|c| c.name == text) {
                return Ok(Given::at(*c, s.span()));
            }
            let hint = names
                .iter()
                .find(|a| normalize(a) == normalize(&text))
                .map(|a| format!(" (did you mean \"{a}\"?)"))
                .unwrap_or_default();
            return Err(syn::Error::new(
                s.span(),
                format!("invalid `{name}` value \"{text}\"{hint}: expected {expected}"),
            ));
        }
        _ => bare_ident(value),
    };
    let hint = found
        .filter(|f| names.contains(&f.as_str()))
        .map(|f| format!(" (write it as a string: `{name} = \"{f}\"`)"))
        .unwrap_or_default();
    Err(syn::Error::new(
        value.span(),
        format!("invalid `{name}` value{hint}: expected a string, {expected}"),
    ))
}

/// `true` or `false`; `note` says what the setting does.
fn flag(name: &str, value: &Expr, note: &str) -> syn::Result<Given<bool>> {
    match lit(value) {
        Some(Lit::Bool(b)) => Ok(Given::at(b.value, b.span)),
        Some(Lit::Str(s)) if matches!(s.value().as_str(), "true" | "false") => Err(syn::Error::new(
            s.span(),
            format!(
                "invalid `{name}` value (write it without quotes: `{name} = {}`): expected `true` or `false`",
                s.value()
            ),
        )),
        _ => Err(syn::Error::new(
            value.span(),
            format!("invalid `{name}` value: expected `true` or `false` ({note})"),
        )),
    }
}

/// An integer literal in `min..=max`, without a suffix.
fn integer(name: &str, value: &Expr, min: u64, max: u64) -> syn::Result<Given<u64>> {
    let expected = if max == u64::from(u32::MAX) {
        format!("expected an integer from {min} to {max}, such as `{name} = 16`")
    } else {
        format!("expected an integer >= {min}, such as `{name} = 10000`")
    };
    match lit(value) {
        Some(Lit::Int(i)) if i.suffix().is_empty() => match i.base10_parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Given::at(n, i.span())),
            _ => Err(syn::Error::new(
                i.span(),
                format!("invalid `{name} = {}`: {expected}", i.base10_digits()),
            )),
        },
        Some(Lit::Str(s)) if s.value().trim().parse::<u64>().is_ok() => Err(syn::Error::new(
            s.span(),
            format!(
                "invalid `{name}` value (write it without quotes: `{name} = {}`): {expected}",
                s.value().trim()
            ),
        )),
        // Spanned over the whole expression (`-1`, not only its `-`).
        _ => Err(syn::Error::new_spanned(
            value,
            format!("invalid `{name}` value: {expected}"),
        )),
    }
}

const STACK_SIZE_EXPECTED: &str =
    "expected bytes (`stack_size = 4194304`) or a size in a string such as \"512KiB\", \"8MiB\" or \"1GiB\"";

/// Bytes, or a string such as `"8MiB"`: the grammar of
/// `CLUSTER_THREAD_STACK_SIZE` (cluster-core's `env::parse_size`; a test
/// checks that both agree).
fn stack_size(value: &Expr) -> syn::Result<Given<u64>> {
    match lit(value) {
        Some(Lit::Int(i)) if i.suffix().is_empty() => match i.base10_parse::<u64>() {
            Ok(n) if n > 0 && usize::try_from(n).is_ok() => Ok(Given::at(n, i.span())),
            _ => Err(syn::Error::new(
                i.span(),
                format!(
                    "invalid `stack_size = {}`: {STACK_SIZE_EXPECTED}, above zero",
                    i.base10_digits()
                ),
            )),
        },
        Some(Lit::Str(s)) => parse_size(&s.value())
            .map(|n| Given::at(n, s.span()))
            .ok_or_else(|| {
                syn::Error::new(
                    s.span(),
                    format!(
                        "invalid `stack_size` value {:?}: {STACK_SIZE_EXPECTED}, above zero",
                        s.value()
                    ),
                )
            }),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("invalid `stack_size` value: {STACK_SIZE_EXPECTED}"),
        )),
    }
}

/// A size in bytes: an integer, alone or with `KiB`, `MiB` or `GiB` (case
/// and a space before the unit optional), above zero.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
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
    let n: u64 = number.parse().ok()?;
    n.checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0 && usize::try_from(bytes).is_ok())
}

const WORKERS_EXPECTED: &str = "expected \"auto\" or an integer >= 1, such as `workers = 4`";

/// `"auto"`, an integer >= 1, or a string holding one.
fn workers(value: &Expr) -> syn::Result<Given<WorkerCount>> {
    let (digits, span) = match lit(value) {
        Some(Lit::Int(i)) => {
            if !i.suffix().is_empty() && i.suffix() != "usize" {
                return Err(syn::Error::new(
                    i.span(),
                    format!("invalid `workers` value: {WORKERS_EXPECTED}, without a suffix"),
                ));
            }
            (i.base10_digits().to_owned(), i.span())
        }
        Some(Lit::Str(s)) if s.value() == "auto" => {
            return Ok(Given::at(WorkerCount::Auto, s.span()))
        }
        Some(Lit::Str(s)) => (s.value(), s.span()),
        _ => {
            let hint = if bare_ident(value).as_deref() == Some("auto") {
                " (write it as a string: `workers = \"auto\"`)"
            } else {
                ""
            };
            return Err(syn::Error::new(
                value.span(),
                format!("invalid `workers` value{hint}: {WORKERS_EXPECTED}"),
            ));
        }
    };
    let shown = format!("{digits:?}");
    match digits.parse::<usize>() {
        Ok(0) => Err(syn::Error::new(
            span,
            "invalid `workers = 0`: a cluster needs at least one worker; \
             expected \"auto\" or an integer >= 1",
        )),
        Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Given::at(WorkerCount::Count(n), span))
        }
        _ => Err(syn::Error::new(
            span,
            format!("invalid `workers` value {shown}: {WORKERS_EXPECTED}"),
        )),
    }
}

const DURATION_EXPECTED: &str =
    "expected a duration string such as \"30s\", \"500ms\", \"2m\", \"1m 30s\" or \"1.5s\"";

fn shutdown_timeout(value: &Expr) -> syn::Result<Given<Duration>> {
    match lit(value) {
        Some(Lit::Str(s)) => parse_duration(&s.value())
            .map(|ms| Given::at(ms, s.span()))
            .map_err(|reason| {
                syn::Error::new(
                    s.span(),
                    format!(
                        "invalid `shutdown_timeout` value \"{}\": {reason}",
                        s.value()
                    ),
                )
            }),
        _ => Err(syn::Error::new(
            value.span(),
            format!("invalid `shutdown_timeout` value: {DURATION_EXPECTED}"),
        )),
    }
}

/// A duration such as `"5s"`; above zero if `nonzero`.
fn duration(name: &str, value: &Expr, nonzero: bool) -> syn::Result<Given<Duration>> {
    match lit(value) {
        Some(Lit::Str(s)) => parse_duration_or_zero(&s.value())
            .and_then(|d| {
                if nonzero && d.is_zero() {
                    Err(format!("`{name}` must be greater than zero"))
                } else {
                    Ok(d)
                }
            })
            .map(|d| Given::at(d, s.span()))
            .map_err(|reason| {
                syn::Error::new(
                    s.span(),
                    format!("invalid `{name}` value \"{}\": {reason}", s.value()),
                )
            }),
        _ => Err(syn::Error::new(
            value.span(),
            format!("invalid `{name}` value: {DURATION_EXPECTED}"),
        )),
    }
}

/// `"0s"` (none, the default) or a duration such as `"2s"`.
fn drain_delay(value: &Expr) -> syn::Result<Given<Duration>> {
    match lit(value) {
        Some(Lit::Str(s)) => parse_duration_or_zero(&s.value())
            .map(|ms| Given::at(ms, s.span()))
            .map_err(|reason| {
                syn::Error::new(
                    s.span(),
                    format!("invalid `drain_delay` value \"{}\": {reason}", s.value()),
                )
            }),
        _ => Err(syn::Error::new(
            value.span(),
            format!("invalid `drain_delay` value: {DURATION_EXPECTED}"),
        )),
    }
}

const MAX_MEMORY_EXPECTED: &str =
    "expected a size as a string, such as `max_memory = \"256MiB\"` (or \"1GiB\", \"512MB\")";

/// `"256MiB"`: a size above zero, in `bytesize`'s grammar (as
/// `CLUSTER_THREAD_MAX_MEMORY` and `cluster-thread set max_memory`).
fn max_memory(value: &Expr) -> syn::Result<Given<u64>> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new(
            value.span(),
            format!("invalid `max_memory` value: {MAX_MEMORY_EXPECTED}"),
        ));
    };
    let text = s.value();
    let fail = |reason: String| {
        syn::Error::new(
            s.span(),
            format!("invalid `max_memory` value \"{text}\": {reason}; {MAX_MEMORY_EXPECTED}"),
        )
    };
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|_: String| fail("not a size".into()))?;
    match size.as_u64() {
        0 => Err(fail(
            "a limit must be above zero (leave `max_memory` out for none)".into(),
        )),
        n => Ok(Given::at(n, s.span())),
    }
}

const SIGNALS_EXPECTED: &str = "expected a string of `signal=action` entries separated by \
     commas, such as \"usr2=upgrade, hup=off, int=stop-now\"";

/// `"usr2=upgrade, hup=off"`: each signal's action, in order (`all=off`
/// first turns every signal off).
fn signals(value: &Expr) -> syn::Result<Given<Vec<SignalEntry>>> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new(
            value.span(),
            format!("invalid `signals` value: {SIGNALS_EXPECTED}"),
        ));
    };
    let text = s.value();
    let fail = |reason: String| {
        syn::Error::new(
            s.span(),
            format!("invalid `signals` value \"{text}\": {reason}"),
        )
    };
    let names: Vec<&str> = SIGNALS.iter().map(|c| c.name).chain(["all"]).collect();
    let actions: Vec<&str> = SIGNAL_ACTIONS.iter().map(|c| c.name).collect();
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let Some((signal, action)) = entry.split_once('=') else {
            return Err(fail(format!(
                "\"{entry}\" is not `signal=action`; {SIGNALS_EXPECTED}"
            )));
        };
        let (signal, action) = (signal.trim(), action.trim());
        let lower = signal.to_ascii_lowercase();
        let bare = lower.strip_prefix("sig").unwrap_or(&lower);
        let signal_choice = match SIGNALS.iter().find(|c| c.name == bare) {
            Some(c) => Some(*c),
            None if bare == "all" => None,
            None => {
                return Err(fail(format!(
                    "unknown signal \"{signal}\"; expected {} (`SIG` and case optional)",
                    list(&names, "")
                )))
            }
        };
        let Some(action_choice) = SIGNAL_ACTIONS.iter().find(|c| c.name == normalize(action))
        else {
            return Err(fail(format!(
                "unknown action \"{action}\" for {signal}; expected {}",
                list(&actions, "")
            )));
        };
        entries.push((signal_choice, *action_choice));
    }
    Ok(Given::at(entries, s.span()))
}

/// Parses a duration in `humantime`'s grammar, the one the environment's
/// variables use at run time (`CLUSTER_THREAD_DRAIN_DELAY`): `"30s"`,
/// `"500ms"`, `"1m 30s"`, `"1.5s"`, `"2 hours"`. Above zero.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    match parse_duration_or_zero(text)? {
        Duration::ZERO => Err("the shutdown timeout must be greater than zero".to_owned()),
        total => Ok(total),
    }
}

/// As [`parse_duration`], zero allowed.
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e}; {DURATION_EXPECTED}"))
}

/// An endpoint's path: a string starting with `/`, not another endpoint's.
fn endpoint_path(
    key: &str,
    value: &Expr,
    taken: &[(&'static str, String)],
) -> syn::Result<Given<String>> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new(
            value.span(),
            format!(
                "invalid `{key}` value: expected a path in a string, such as `{key} = \"/{key}\"`"
            ),
        ));
    };
    let path = s.value();
    if !path.starts_with('/')
        || path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(syn::Error::new(
            s.span(),
            format!(
                "invalid `{key}` value {path:?}: expected a path starting with '/' \
                 without spaces, '?' or '#', such as \"/{key}\""
            ),
        ));
    }
    if let Some((other, _)) = taken.iter().find(|(_, p)| *p == path) {
        return Err(syn::Error::new(
            s.span(),
            format!("invalid `{key}` value {path:?}: `{other}` has that path already"),
        ));
    }
    Ok(Given::at(path, s.span()))
}

/// A user or group name in a string, as `useradd` allows it (and as
/// `CLUSTER_THREAD_USER` / `CLUSTER_THREAD_GROUP` take it): letters,
/// digits, `.`, `_`, `-` (not first) and a final `$`. Whether it exists is
/// checked at start, on the host that runs the program.
fn identity(key: &str, value: &Expr) -> syn::Result<Given<String>> {
    let expected = format!(
        "expected a {key} name in a string, such as `{key} = \"www-data\"` \
         (letters, digits, '.', '_' and '-', not first)"
    );
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new(
            value.span(),
            format!("invalid `{key}` value: {expected}"),
        ));
    };
    let name = s.value();
    let body = name.strip_suffix('$').unwrap_or(&name);
    let ok = !body.is_empty()
        && !body.starts_with('-')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(syn::Error::new(
            s.span(),
            format!("invalid `{key}` value {name:?}: {expected}"),
        ));
    }
    Ok(Given::at(name, s.span()))
}

/// A path to the setup function, bare or in a string.
fn setup(value: &Expr) -> syn::Result<Path> {
    path_value(
        value,
        "invalid `setup` value: expected the path of a \
         `fn(cluster_thread::ClusterBuilder) -> ClusterBuilder` (or `-> Result<ClusterBuilder, E>`), \
         such as `setup = my_setup` or `setup = \"my_setup\"`",
    )
}

/// A path to a function, bare or in a string.
fn primary(value: &Expr) -> syn::Result<Path> {
    path_value(
        value,
        "invalid `primary` value: expected the path of an \
         `async fn(cluster_thread::Cluster)`, such as `primary = my_primary` \
         or `primary = \"my_primary\"`",
    )
}

/// The facade's path, in a string (as `#[tokio::main(crate = "...")]`) or bare.
fn krate(value: &Expr) -> syn::Result<Path> {
    path_value(
        value,
        "invalid `crate` value: expected the path of the cluster_thread facade \
         as a string, such as `crate = \"cluster_thread\"` or `crate = \"ct\"`",
    )
}

fn path_value(value: &Expr, msg: &str) -> syn::Result<Path> {
    match ungroup(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_path_str(s).map_err(|e| syn::Error::new(s.span(), format!("{msg} ({e})"))),
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        _ => Err(syn::Error::new(value.span(), msg)),
    }
}

fn parse_path_str(s: &LitStr) -> syn::Result<Path> {
    if s.value().trim().is_empty() {
        return Err(syn::Error::new(s.span(), "the string is empty"));
    }
    s.parse_with(Path::parse_mod_style)
        .or_else(|_| s.parse::<Path>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ok(tokens: TokenStream) -> Args {
        match Args::parse(tokens) {
            (args, None) => args,
            (_, Some(e)) => panic!("unexpected error: {e}"),
        }
    }

    fn errors(tokens: TokenStream) -> Vec<String> {
        match Args::parse(tokens) {
            (args, None) => panic!("expected an error, got {args:?}"),
            (_, Some(e)) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn error(tokens: TokenStream) -> String {
        let all = errors(tokens);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    fn path_text(p: &Path) -> String {
        quote!(#p).to_string().replace(' ', "")
    }

    /// The name of a given choice.
    fn name(choice: &Option<Given<Choice>>) -> Option<&'static str> {
        choice.as_ref().map(|c| c.value.name)
    }

    fn count(workers: &Option<Given<WorkerCount>>) -> Option<WorkerCount> {
        workers.as_ref().map(|w| w.value)
    }

    fn ms(duration: &Option<Given<Duration>>) -> Option<u128> {
        duration.as_ref().map(|d| d.value.as_millis())
    }

    #[test]
    fn no_arguments_leave_every_setting_to_the_runtime() {
        let args = ok(quote!());
        assert_eq!(count(&args.workers), None);
        assert_eq!(name(&args.port), None);
        assert_eq!(name(&args.balance), None);
        assert_eq!(name(&args.restart), None);
        assert_eq!(ms(&args.shutdown_timeout), None);
        assert_eq!(ms(&args.drain_delay), None);
        assert_eq!(name(&args.on_panic), None);
        assert!(args.primary.is_none());
        assert!(args.krate.is_none());
    }

    #[test]
    fn workers() {
        let workers = |tokens| count(&ok(tokens).workers);
        assert_eq!(workers(quote!(workers = 4)), Some(WorkerCount::Count(4)));
        assert_eq!(
            workers(quote!(workers = 1usize)),
            Some(WorkerCount::Count(1))
        );
        assert_eq!(workers(quote!(workers = "4")), Some(WorkerCount::Count(4)));
        assert_eq!(workers(quote!(workers = "auto")), Some(WorkerCount::Auto));
        assert_eq!(
            workers(quote!(workers = 1_000)),
            Some(WorkerCount::Count(1000))
        );
        for bad in [
            quote!(workers = "many"),
            quote!(workers = -1),
            quote!(workers = 2.5),
            quote!(workers = "+3"),
            quote!(workers = " 3"),
            quote!(workers = 4u8),
            quote!(workers = 99999999999999999999999999),
            quote!(workers = ""),
        ] {
            let e = error(bad);
            assert!(e.contains("\"auto\" or an integer >= 1"), "{e}");
        }
        let e = error(quote!(workers = auto));
        assert!(e.contains("workers = \"auto\""), "{e}");
    }

    #[test]
    fn zero_workers() {
        for zero in [
            quote!(workers = 0),
            quote!(workers = "0"),
            quote!(workers = 00),
        ] {
            let e = error(zero);
            assert!(e.contains("`workers = 0`"), "{e}");
            assert!(e.contains("at least one worker"), "{e}");
        }
    }

    #[test]
    fn port() {
        let port = |tokens| ok(tokens).port.map(|p| p.value);
        assert_eq!(port(quote!(port = "shared")), Some(PORTS[0]));
        assert_eq!(
            port(quote!(port = "per-worker")).map(|p| p.variant),
            Some("PerWorker")
        );
        let e = error(quote!(port = "per_worker"));
        assert!(e.contains("did you mean \"per-worker\""), "{e}");
        assert!(e.contains("\"shared\" or \"per-worker\""), "{e}");
        let e = error(quote!(port = shared));
        assert!(e.contains("port = \"shared\""), "{e}");
        let e = error(quote!(port = 8000));
        assert!(e.contains("expected a string"), "{e}");
    }

    #[test]
    fn balance() {
        for choice in BALANCES {
            let value = choice.name;
            assert_eq!(
                ok(quote!(balance = #value)).balance.map(|b| b.value),
                Some(choice)
            );
        }
        let e = error(quote!(balance = "random"));
        assert!(
            e.contains(
                "one of \"round-robin\", \"least-connections\", \"os\", \"reuseport\" or \"sticky\""
            ),
            "{e}"
        );
        let e = error(quote!(balance = "RoundRobin"));
        assert!(e.contains("did you mean \"round-robin\""), "{e}");
    }

    /// The macro's list is the runtime's: each mode of `Balance::ALL` is
    /// accepted under its `name()` and expands to its own variant, each name
    /// the macro accepts parses at run time (`CLUSTER_THREAD_BALANCE`) to
    /// that variant, and there are as many.
    #[test]
    fn balance_names_and_variants_are_the_runtimes() {
        use cluster_thread::net::Balance;
        assert_eq!(BALANCES.len(), Balance::ALL.len());
        for mode in Balance::ALL {
            let name = mode.name();
            let choice = ok(quote!(balance = #name)).balance.map(|b| b.value);
            assert_eq!(choice.map(|c| c.name), Some(name));
            assert_eq!(
                choice.map(|c| c.variant.to_owned()),
                Some(format!("{mode:?}"))
            );
        }
        for choice in BALANCES {
            let mode = choice.name.parse::<Balance>().map(|m| format!("{m:?}"));
            assert_eq!(mode.as_deref(), Ok(choice.variant), "{choice:?}");
        }
    }

    #[test]
    fn signals() {
        let entries = |tokens| {
            ok(tokens).signals.map(|s| {
                s.value
                    .iter()
                    .map(|(sig, action)| (sig.map(|c| c.variant), action.variant))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            entries(quote!(signals = "usr2=upgrade, SIGHUP = off,Int=stop_now")),
            Some(vec![
                (Some("Usr2"), "Upgrade"),
                (Some("Hup"), "Off"),
                (Some("Int"), "StopNow"),
            ])
        );
        assert_eq!(
            entries(quote!(signals = "all=off, term=stop")),
            Some(vec![(None, "Off"), (Some("Term"), "Stop")])
        );
        for (value, says) in [
            ("usr2=upgrayedd", "unknown action \"upgrayedd\" for usr2; expected stop, interrupt, stop-now, reload, upgrade, ignore or off"),
            ("winch=stop", "unknown signal \"winch\"; expected term, int, hup, quit, usr1, usr2 or all"),
            ("", "\"\" is not `signal=action`"),
            ("hup", "\"hup\" is not `signal=action`"),
        ] {
            let e = error(quote!(signals = #value));
            assert!(e.contains(says), "{value}: {e}");
            assert!(e.starts_with(&format!("invalid `signals` value \"{value}\"")), "{e}");
        }
        let e = error(quote!(signals = off));
        assert!(
            e.contains("invalid `signals` value: expected a string"),
            "{e}"
        );
    }

    /// As for `balance`: the names and variants of `signals` are the
    /// runtime's `Signal` and `SignalAction`.
    #[test]
    fn signal_names_and_variants_are_the_runtimes() {
        use cluster_thread::{Signal, SignalAction};
        assert_eq!(SIGNALS.len(), Signal::ALL.len());
        for signal in Signal::ALL {
            let name = signal.name().to_ascii_lowercase();
            let choice = SIGNALS.iter().find(|c| format!("sig{}", c.name) == name);
            assert_eq!(
                choice.map(|c| c.variant.to_owned()),
                Some(format!("{signal:?}"))
            );
        }
        assert_eq!(SIGNAL_ACTIONS.len(), SignalAction::ALL.len());
        for action in SignalAction::ALL {
            let choice = SIGNAL_ACTIONS.iter().find(|c| c.name == action.name());
            assert_eq!(
                choice.map(|c| c.variant.to_owned()),
                Some(format!("{action:?}"))
            );
        }
    }

    /// As for `balance`: `on_panic`'s names are `OnPanic`'s.
    #[test]
    fn on_panic_names_and_variants_are_the_runtimes() {
        use cluster_thread::http::OnPanic;
        for choice in ON_PANICS {
            let mode = choice.name.parse::<OnPanic>();
            assert_eq!(mode.map(OnPanic::name).ok(), Some(choice.name));
            let variant = choice.name.parse::<OnPanic>().map(|m| format!("{m:?}"));
            assert_eq!(variant.ok().as_deref(), Some(choice.variant), "{choice:?}");
        }
        for mode in [OnPanic::Restart, OnPanic::Ignore] {
            assert!(ON_PANICS.iter().any(|c| c.name == mode.name()), "{mode:?}");
        }
    }

    #[test]
    fn restart() {
        for choice in RESTARTS {
            let value = choice.name;
            assert_eq!(
                ok(quote!(restart = #value)).restart.map(|r| r.value),
                Some(choice)
            );
        }
        let e = error(quote!(restart = "sometimes"));
        assert!(
            e.contains("one of \"never\", \"on-failure\" or \"always\""),
            "{e}"
        );
    }

    #[test]
    fn on_panic() {
        for choice in ON_PANICS {
            let value = choice.name;
            assert_eq!(
                ok(quote!(on_panic = #value)).on_panic.map(|p| p.value),
                Some(choice)
            );
        }
        let e = error(quote!(on_panic = "abort"));
        assert!(e.contains("\"ignore\" or \"restart\""), "{e}");
    }

    #[test]
    fn shutdown_timeout() {
        assert_eq!(
            ms(&ok(quote!(shutdown_timeout = "500ms")).shutdown_timeout),
            Some(500)
        );
        assert_eq!(
            ms(&ok(quote!(shutdown_timeout = "1m30s")).shutdown_timeout),
            Some(90_000)
        );
        let e = error(quote!(shutdown_timeout = "0s"));
        assert!(e.contains("greater than zero"), "{e}");
        let e = error(quote!(shutdown_timeout = 30));
        assert!(e.contains("such as \"30s\""), "{e}");
        let e = error(quote!(shutdown_timeout = "soon"));
        assert!(
            e.contains("invalid `shutdown_timeout` value \"soon\""),
            "{e}"
        );
    }

    #[test]
    fn drain_delay() {
        assert_eq!(ms(&ok(quote!(drain_delay = "2s")).drain_delay), Some(2_000));
        assert_eq!(ms(&ok(quote!(drain_delay = "0s")).drain_delay), Some(0));
        let e = error(quote!(drain_delay = 2));
        assert!(
            e.contains("invalid `drain_delay` value: expected a duration"),
            "{e}"
        );
        let e = error(quote!(drain_delay = "2 parsecs"));
        assert!(
            e.contains("invalid `drain_delay` value \"2 parsecs\""),
            "{e}"
        );
    }

    #[test]
    fn max_memory() {
        let bytes = |args: &Args| args.max_memory.as_ref().map(|g| g.value);
        assert_eq!(bytes(&ok(quote!(max_memory = "64MiB"))), Some(64 << 20));
        assert_eq!(bytes(&ok(quote!(max_memory = "1 GiB"))), Some(1 << 30));
        for bad in [
            quote!(max_memory = 64),
            quote!(max_memory = "lots"),
            quote!(max_memory = "0"),
        ] {
            let e = error(bad);
            assert!(e.contains("invalid `max_memory` value"), "{e}");
        }
    }

    #[test]
    fn durations_are_humantimes_grammar() {
        for (text, ms) in [
            ("1ms", 1),
            ("500ms", 500),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h 30m", 5_400_000),
            (" 10s ", 10_000),
            ("1s500ms", 1_500),
            ("1.5s", 1_500),
            ("10 s", 10_000),
            ("2 seconds", 2_000),
            ("3sec", 3_000),
        ] {
            let parsed = parse_duration(text).map(|d| d.as_millis());
            assert_eq!(parsed, Ok(ms), "{text}");
            // The environment's variables read the same grammar.
            assert_eq!(
                humantime::parse_duration(text.trim()).map(|d| d.as_millis()),
                Ok(ms)
            );
        }
        for (text, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("0s", "greater than zero"),
            ("0ms 0s", "greater than zero"),
            ("30", "time unit needed"),
            ("1m30", "time unit needed"),
            ("s", "expected number"),
            ("-1s", "expected number"),
            ("3x", "unknown time unit \"x\""),
            ("18446744073709551615h", "too large"),
        ] {
            match parse_duration(text) {
                Ok(d) => panic!("{text:?} parsed as {d:?}"),
                Err(e) => {
                    assert!(e.contains(reason), "{text:?}: {e}");
                    let says_what = reason == "greater than zero" || e.contains("\"1m 30s\"");
                    assert!(says_what, "{text:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn primary() {
        let args = ok(quote!(primary = watch));
        assert_eq!(
            path_text(&args.primary.unwrap_or_else(|| unreachable!())),
            "watch"
        );
        let args = ok(quote!(primary = self::app::watch));
        assert_eq!(
            path_text(&args.primary.unwrap_or_else(|| unreachable!())),
            "self::app::watch"
        );
        let args = ok(quote!(primary = "crate::watch"));
        assert_eq!(
            path_text(&args.primary.unwrap_or_else(|| unreachable!())),
            "crate::watch"
        );
        for bad in [
            quote!(primary = 3),
            quote!(primary = "not a path"),
            quote!(primary = ""),
            quote!(primary = || ()),
        ] {
            let e = error(bad);
            assert!(e.contains("async fn(cluster_thread::Cluster)"), "{e}");
        }
    }

    #[test]
    fn crate_path() {
        let args = ok(quote!(crate = "ct"));
        assert_eq!(
            path_text(&args.krate.unwrap_or_else(|| unreachable!())),
            "ct"
        );
        let args = ok(quote!(crate = "::my::facade"));
        assert_eq!(
            path_text(&args.krate.unwrap_or_else(|| unreachable!())),
            "::my::facade"
        );
        let args = ok(quote!(crate = "crate::facade"));
        assert_eq!(
            path_text(&args.krate.unwrap_or_else(|| unreachable!())),
            "crate::facade"
        );
        let args = ok(quote!(crate = ct));
        assert_eq!(
            path_text(&args.krate.unwrap_or_else(|| unreachable!())),
            "ct"
        );
        for bad in [quote!(crate = 1), quote!(crate = "a b"), quote!(crate = "")] {
            let e = error(bad);
            assert!(e.contains("crate = \"cluster_thread\""), "{e}");
        }
    }

    #[test]
    fn global_allocator() {
        let args = ok(quote!(global_allocator = false));
        assert_eq!(args.global_allocator.map(|g| g.value), Some(false));
        assert!(ok(quote!()).global_allocator.is_none());
        let e = error(quote!(global_allocator = "jemalloc"));
        assert!(e.contains("keeps the program's own"), "{e}");
    }

    #[test]
    fn control_and_log() {
        let args = ok(quote!(control = false, log = "off"));
        assert_eq!(args.control.map(|c| c.value), Some(false));
        assert_eq!(name(&args.log), Some("off"));
        let args = ok(quote!(control = true, log = "debug"));
        assert_eq!(args.control.map(|c| c.value), Some(true));
        assert_eq!(name(&args.log), Some("debug"));
        let args = ok(quote!());
        assert!(args.control.is_none() && args.log.is_none());
        let e = error(quote!(control = "false"));
        assert!(e.contains("without quotes: `control = false`"), "{e}");
        let e = error(quote!(control = 0));
        assert!(e.contains("expected `true` or `false`"), "{e}");
        let e = error(quote!(log = "verbose"));
        assert!(e.contains("\"off\", \"error\""), "{e}");
    }

    #[test]
    fn user_and_group() {
        let args = ok(quote!(user = "www-data", group = "web$"));
        assert_eq!(args.user.map(|g| g.value).as_deref(), Some("www-data"));
        assert_eq!(args.group.map(|g| g.value).as_deref(), Some("web$"));
        for bad in [
            quote!(user = www),
            quote!(user = 33),
            quote!(user = ""),
            quote!(user = "root:root"),
            quote!(user = "-x"),
            quote!(group = "a b"),
        ] {
            let e = error(bad);
            assert!(e.contains("name in a string, such as"), "{e}");
        }
    }

    #[test]
    fn every_argument_at_once() {
        let args = ok(quote!(
            workers = 3,
            port = "per-worker",
            balance = "sticky",
            restart = "always",
            shutdown_timeout = "2m",
            drain_delay = "1500ms",
            on_panic = "ignore",
            primary = watch,
            crate = "ct",
        ));
        assert_eq!(count(&args.workers), Some(WorkerCount::Count(3)));
        assert_eq!(name(&args.port), Some("per-worker"));
        assert_eq!(name(&args.balance), Some("sticky"));
        assert_eq!(name(&args.restart), Some("always"));
        assert_eq!(ms(&args.shutdown_timeout), Some(120_000));
        assert_eq!(ms(&args.drain_delay), Some(1_500));
        assert_eq!(name(&args.on_panic), Some("ignore"));
        assert!(args.primary.is_some());
        assert!(args.krate.is_some());
    }

    #[test]
    fn unknown_key() {
        let e = error(quote!(threads = 4));
        assert!(e.contains("unknown argument `threads`"), "{e}");
        assert!(
            e.contains(
                "`workers`, `port`, `balance`, `restart`, `restart_delay`, `min_uptime`, `max_restarts`, `shutdown_timeout`, `kill_timeout`, `listen_timeout`, `wait_ready`, `drain_delay`, `max_memory`, `signals`, `pin_workers`, `stack_size`, `max_connections`, `connection_cap`, `on_panic`, `healthz`, `metrics`, `status`, `control`, `global_allocator`, `log`, `user`, `group`, `setup`, `primary` or `crate`"
            ),
            "{e}"
        );
        let e = error(quote!(worker = 4));
        assert!(e.contains("did you mean `workers`"), "{e}");
        let e = error(quote!(onPanic = "ignore"));
        assert!(e.contains("unknown argument `onPanic`"), "{e}");
        assert!(e.contains("did you mean `on_panic`"), "{e}");
    }

    #[test]
    fn endpoint_paths_and_setup() {
        let args = ok(quote!(
            healthz = "/healthz",
            metrics = "/m",
            status = "/status",
            setup = app::setup
        ));
        let path = |p: &Option<Given<String>>| p.as_ref().map(|p| p.value.clone());
        assert_eq!(path(&args.healthz).as_deref(), Some("/healthz"));
        assert_eq!(path(&args.metrics).as_deref(), Some("/m"));
        assert_eq!(path(&args.status).as_deref(), Some("/status"));
        assert!(args.setup.is_some());
        let e = error(quote!(metrics = "metrics"));
        assert!(e.contains("a path starting with '/'"), "{e}");
        let e = error(quote!(metrics = "/a b"));
        assert!(e.contains("without spaces"), "{e}");
        let e = error(quote!(healthz = "/x", status = "/x"));
        assert!(e.contains("`healthz` has that path already"), "{e}");
        let e = error(quote!(setup = 1));
        assert!(e.contains("invalid `setup` value"), "{e}");
    }

    #[test]
    fn the_settings_of_the_builder_and_the_net_config() {
        let args = ok(quote!(
            restart_delay = "250ms",
            min_uptime = "0s",
            max_restarts = 3,
            kill_timeout = "2s",
            listen_timeout = "10s",
            pin_workers = true,
            wait_ready = true,
            stack_size = "8 MiB",
            max_connections = 10000,
            connection_cap = 20000,
        ));
        assert_eq!(ms(&args.restart_delay), Some(250));
        assert_eq!(ms(&args.min_uptime), Some(0));
        assert_eq!(ms(&args.kill_timeout), Some(2_000));
        assert_eq!(ms(&args.listen_timeout), Some(10_000));
        let n = |g: &Option<Given<u64>>| g.as_ref().map(|g| g.value);
        assert_eq!(n(&args.max_restarts), Some(3));
        assert_eq!(n(&args.stack_size), Some(8 << 20));
        assert_eq!(n(&args.max_connections), Some(10_000));
        assert_eq!(n(&args.connection_cap), Some(20_000));
        assert_eq!(args.pin_workers.map(|p| p.value), Some(true));
        assert_eq!(args.wait_ready.map(|p| p.value), Some(true));
        assert_eq!(n(&ok(quote!(stack_size = 65536)).stack_size), Some(65_536));
        for (tokens, says) in [
            (
                quote!(kill_timeout = "0s"),
                "`kill_timeout` must be greater than zero",
            ),
            (
                quote!(listen_timeout = 3),
                "invalid `listen_timeout` value: expected a duration",
            ),
            (
                quote!(min_uptime = "1 fortnight"),
                "invalid `min_uptime` value \"1 fortnight\"",
            ),
            (
                quote!(max_restarts = -1),
                "invalid `max_restarts` value: expected an integer from 0",
            ),
            (
                quote!(max_restarts = 4294967296),
                "invalid `max_restarts = 4294967296`",
            ),
            (
                quote!(max_restarts = "3"),
                "without quotes: `max_restarts = 3`",
            ),
            (quote!(max_connections = 0), "expected an integer >= 1"),
            (
                quote!(connection_cap = 5u8),
                "invalid `connection_cap` value",
            ),
            (
                quote!(pin_workers = "true"),
                "without quotes: `pin_workers = true`",
            ),
            (quote!(pin_workers = 1), "expected `true` or `false`"),
            (
                quote!(stack_size = "8MB"),
                "invalid `stack_size` value \"8MB\"",
            ),
            (quote!(stack_size = 0), "above zero"),
        ] {
            let e = error(tokens.clone());
            assert!(e.contains(says), "{tokens}: {e}");
        }
    }

    /// `stack_size`'s grammar is `CLUSTER_THREAD_STACK_SIZE`'s: these are
    /// the texts and answers of cluster-core's `env.rs` tests.
    #[test]
    fn stack_sizes_parse_as_the_variable_does() {
        for (text, bytes) in [
            ("65536", Some(65_536)),
            ("512KiB", Some(512 << 10)),
            ("8 mib", Some(8 << 20)),
            ("1GiB", Some(1 << 30)),
            ("0", None),
            ("8MB", None),
            ("1.5MiB", None),
            ("", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text}");
        }
    }

    #[test]
    fn duplicate_key() {
        let e = error(quote!(workers = 2, port = "shared", workers = 3));
        assert!(e.contains("duplicate argument `workers`"), "{e}");
    }

    #[test]
    fn every_error_is_reported() {
        let all = errors(quote!(
            workers = 0,
            port = "x",
            threads = 1,
            balance = "os",
            restart = 1
        ));
        assert_eq!(all.len(), 4, "{all:?}");
        // The valid argument is kept, the wrong ones are left out.
        let (args, e) = Args::parse(quote!(workers = 0, balance = "os"));
        assert!(e.is_some());
        assert_eq!(name(&args.balance), Some("os"));
        assert_eq!(count(&args.workers), None);
    }

    #[test]
    fn syntax_errors() {
        let e = error(quote!(workers));
        assert!(e.contains("`workers = ...`"), "{e}");
        let e = error(quote!(foo));
        assert!(e.contains("`key = value`"), "{e}");
        let e = error(quote!("auto"));
        assert!(e.contains("`key = value`"), "{e}");
        let e = error(quote!(workers = 2 port = "shared"));
        assert!(e.contains("expected `,`"), "{e}");
        // A trailing comma is fine.
        assert_eq!(
            count(&ok(quote!(workers = 2,)).workers),
            Some(WorkerCount::Count(2))
        );
    }

    #[test]
    fn raw_identifiers_and_keyword_keys() {
        assert_eq!(
            count(&ok(quote!(r#workers = 2)).workers),
            Some(WorkerCount::Count(2))
        );
    }
}

/// Property tests: the parsers take whatever a user can type, and never panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_duration_text_parses_or_errs_without_panicking(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn durations_round_trip(h in 0u64..48, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            prop_assume!(h + m + s + ms > 0);
            let mut text = String::new();
            for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
                if n > 0 {
                    text.push_str(&format!("{n}{unit}"));
                }
            }
            let want = ((h * 60 + m) * 60 + s) * 1000 + ms;
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(want)));
        }

        #[test]
        fn any_attribute_tokens_parse_or_err_without_panicking(text in "[a-z_ =,\"0-9:()-]{0,40}") {
            // Only token streams rustc would hand the macro.
            if let Ok(tokens) = text.parse::<TokenStream>() {
                let (_args, _error) = Args::parse(tokens);
            }
        }

        #[test]
        fn workers_accepts_every_positive_count(n in 1usize..100_000) {
            let tokens: TokenStream = format!("workers = {n}").parse().unwrap();
            let (args, error) = Args::parse(tokens);
            prop_assert!(error.is_none());
            prop_assert_eq!(args.workers.map(|w| w.value), Some(WorkerCount::Count(n)));
        }
    }
}
