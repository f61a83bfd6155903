//! The privilege drop (`ClusterBuilder::user` / `group`): the names are
//! resolved at `build`, and the whole process switches to them once the
//! cluster first reaches `Listening` (its first workers have bound their
//! sockets, so ports below 1024 work). A leaf: it names no module that runs
//! the cluster.

use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};

use crate::Error;

/// Whom the process becomes: resolved, and only when it is not that already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switch {
    /// The user's name (for `initgroups`) and uid; `None`: keep the uid.
    user: Option<(String, Uid)>,
    /// The group: the `group` setting's, else the user's primary group.
    gid: Gid,
    /// What the log line and errors show, e.g. `user = "nobody"`.
    shown: String,
}

/// A setting as given: its name (`user`, or the variable that set it) and value.
pub(crate) type Given<'a> = Option<(&'static str, &'a str)>;

/// Resolves `user` and `group`. `None` when neither is given, or when the
/// process runs as that user and group already (a hot upgrade's new
/// process of a dropped one). An unknown name, or a switch asked for while
/// not root, is an error naming the setting.
pub(crate) fn resolve(user: Given<'_>, group: Given<'_>) -> Result<Option<Switch>, Error> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let bad = |(setting, value): (&'static str, &str), reason: String| Error::BadIdentity {
        setting,
        value: value.to_owned(),
        reason,
    };
    let user_entry = match user {
        Some(given) => Some(match User::from_name(given.1) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Err(bad(given, "no such user".into())),
            Err(e) => return Err(bad(given, format!("could not look the user up: {e}"))),
        }),
        None => None,
    };
    let gid = match group {
        Some(given) => match Group::from_name(given.1) {
            Ok(Some(entry)) => entry.gid,
            Ok(None) => return Err(bad(given, "no such group".into())),
            Err(e) => return Err(bad(given, format!("could not look the group up: {e}"))),
        },
        // A user alone: its primary group, as login does.
        None => user_entry.as_ref().map_or_else(Gid::current, |u| u.gid),
    };
    let uid = user_entry.as_ref().map(|u| u.uid);
    let shown = [user, group]
        .into_iter()
        .flatten()
        .map(|(setting, value)| format!("{setting} = {value:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let already = uid.is_none_or(|uid| Uid::current() == uid && Uid::effective() == uid)
        && Gid::current() == gid
        && Gid::effective() == gid;
    if already {
        return Ok(None);
    }
    if !Uid::effective().is_root() {
        // The setting the process is not already at.
        let user_differs = uid.is_some_and(|uid| Uid::current() != uid || Uid::effective() != uid);
        let given = match (user, group) {
            (Some(user), _) if user_differs => user,
            (_, Some(group)) => group,
            (Some(user), None) => user,
            (None, None) => return Ok(None),
        };
        return Err(bad(
            given,
            format!(
                "switching to another user or group needs root; this process runs as uid {} gid {}",
                Uid::effective(),
                Gid::effective()
            ),
        ));
    }
    Ok(Some(Switch {
        user: user_entry.map(|u| (u.name, u.uid)),
        gid,
        shown,
    }))
}

impl Switch {
    /// The uid and gid the process has after the switch.
    pub(crate) fn target(&self) -> (u32, u32) {
        let uid = self
            .user
            .as_ref()
            .map_or_else(Uid::effective, |(_, uid)| *uid);
        (uid.as_raw(), self.gid.as_raw())
    }
}

/// A failed switch, kept to be returned (as [`Error::PrivilegeDrop`]) by
/// every `wait` of the stopped cluster.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    settings: String,
    call: &'static str,
    errno: Errno,
}

impl Failure {
    pub(crate) fn error(&self) -> Error {
        Error::PrivilegeDrop {
            settings: self.settings.clone(),
            call: self.call,
            source: std::io::Error::from(self.errno),
        }
    }
}

/// Switches every thread of the process (glibc applies each call to all of
/// them): the supplementary groups first, then the group, the user last
/// (after it, nothing else may be changed).
pub(crate) fn apply(drop: &Switch) -> Result<(), Failure> {
    let fail = |call: &'static str, errno: Errno| Failure {
        settings: drop.shown.clone(),
        call,
        errno,
    };
    match &drop.user {
        Some((name, _)) => {
            let name =
                CString::new(name.as_str()).map_err(|_| fail("initgroups", Errno::EINVAL))?;
            nix::unistd::initgroups(&name, drop.gid).map_err(|e| fail("initgroups", e))?;
        }
        None => nix::unistd::setgroups(&[drop.gid]).map_err(|e| fail("setgroups", e))?,
    }
    nix::unistd::setgid(drop.gid).map_err(|e| fail("setgid", e))?;
    if let Some((_, uid)) = &drop.user {
        nix::unistd::setuid(*uid).map_err(|e| fail("setuid", e))?;
    }
    tracing::info!(
        settings = %drop.shown,
        uid = Uid::current().as_raw(),
        gid = Gid::current().as_raw(),
        "dropped privileges: the whole process runs as this user and group now"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_asked_is_nothing_to_do() {
        assert_eq!(resolve(None, None).ok(), Some(None));
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_the_setting() {
        let e = resolve(Some(("user", "no-such-user-here")), None).map(|_| ());
        let text = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("`user = \"no-such-user-here\"`"), "{text}");
        assert!(text.contains("no such user"), "{text}");
        let e = resolve(None, Some(("CLUSTER_THREAD_GROUP", "no-such-group"))).map(|_| ());
        let text = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("`CLUSTER_THREAD_GROUP = \"no-such-group\"`"),
            "{text}"
        );
    }

    #[test]
    fn the_current_user_is_no_switch() {
        let me = User::from_uid(Uid::effective()).ok().flatten();
        if let Some(me) = me.filter(|_| Uid::current() == Uid::effective()) {
            if Gid::current() == me.gid && Gid::effective() == me.gid {
                assert_eq!(resolve(Some(("user", &me.name)), None).ok(), Some(None));
            }
        }
    }
}
