//! Where the control socket lives, and making it safely: a directory only
//! this user can enter (created 0700; refused if it exists looser, under
//! another owner, or as a symlink), a socket file only this user can open
//! (0600), a stale socket of a dead process replaced, nothing else ever
//! removed.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::Error;

/// The variable that says where control sockets go: a directory, or `off`
/// for none.
pub const CONTROL_ENV: &str = "CLUSTER_THREAD_CONTROL";

/// The control directory this user's clusters use: `$CLUSTER_THREAD_CONTROL`
/// if set (`None` if it says `off`); else `$XDG_RUNTIME_DIR/cluster-thread`;
/// else `/run/cluster-thread` as root; else `cluster-thread-<uid>` in the
/// temp directory. The `cluster-thread` command looks in the same place.
/// An `XDG_RUNTIME_DIR` of another user is passed over (a program started
/// as root that drops to a user, and the new process of its hot upgrade,
/// both use that user's directory).
pub fn control_dir() -> Option<PathBuf> {
    control_dir_for(nix::unistd::geteuid().as_raw())
}

/// [`control_dir`] of the user `uid` (the one a process will run as).
pub(crate) fn control_dir_for(uid: u32) -> Option<PathBuf> {
    control_dir_from(
        std::env::var_os(CONTROL_ENV).map(PathBuf::from),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        uid,
    )
}

pub(crate) fn control_dir_from(
    explicit: Option<PathBuf>,
    runtime: Option<PathBuf>,
    uid: u32,
) -> Option<PathBuf> {
    if let Some(dir) = explicit.filter(|d| !d.as_os_str().is_empty()) {
        return (dir.as_os_str() != "off").then_some(dir);
    }
    let of_another = |d: &PathBuf| std::fs::metadata(d).is_ok_and(|m| m.uid() != uid);
    if let Some(runtime) = runtime.filter(|d| d.is_absolute() && !of_another(d)) {
        return Some(runtime.join("cluster-thread"));
    }
    if uid == 0 {
        return Some(PathBuf::from("/run/cluster-thread"));
    }
    Some(std::env::temp_dir().join(format!("cluster-thread-{uid}")))
}

/// Who the control directory and socket belong to: this process's user,
/// or the one it will switch to (a root process's privilege drop), which
/// is given them as they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    uid: u32,
    /// The uid and gid to give what is made, when not this process's.
    give: Option<(u32, u32)>,
}

impl Owner {
    /// This process's user, or `target` (uid, gid) once it switches.
    pub(crate) fn new(target: Option<(u32, u32)>) -> Owner {
        match target {
            Some((uid, gid)) => Owner {
                uid,
                give: Some((uid, gid)),
            },
            None => Owner {
                uid: nix::unistd::geteuid().as_raw(),
                give: None,
            },
        }
    }

    pub(crate) fn uid(self) -> u32 {
        self.uid
    }

    /// Gives `path` (just made by this process) to the owner.
    fn give(self, path: &Path) -> io::Result<()> {
        match self.give {
            Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }
}

/// Creates `dir` 0700 if it is missing (its parents as needed), then checks
/// that it is a directory of `owner` that no one else may enter.
pub(crate) fn prepare_dir(dir: &Path, owner: Owner) -> Result<(), Error> {
    let io_error = |what: &'static str| {
        move |source| Error::Io {
            what,
            path: dir.to_owned(),
            source,
        }
    };
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("creating the parents of"))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => owner
                    .give(dir)
                    .map_err(io_error("giving the control directory to its user"))?,
                // Made by someone else meanwhile: checked below.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("creating the control directory")(e)),
            }
        }
        Err(e) => return Err(io_error("reading the control directory")(e)),
    }
    check_dir(dir, owner.uid())
}

/// A directory of the user `me`, mode 0700 or stricter, not a symlink.
pub(crate) fn check_dir(dir: &Path, me: u32) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| Error::Io {
        what: "reading the control directory",
        path: dir.to_owned(),
        source,
    })?;
    let refuse = |reason: String| Error::ControlDir {
        dir: dir.to_owned(),
        reason,
    };
    if !meta.file_type().is_dir() {
        return Err(refuse(
            "it is not a directory (a symlink or a file is never followed)".into(),
        ));
    }
    if meta.uid() != me {
        let whose = if me == nix::unistd::geteuid().as_raw() {
            "this process's uid"
        } else {
            "the uid this process switches to"
        };
        return Err(refuse(format!(
            "it belongs to uid {}, not to {whose} {me}",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {mode:04o}: other users may enter it (chmod 700 it, or remove it to have it made)"
        )));
    }
    Ok(())
}

/// The socket's file name: `<name>-<pid>.sock`.
pub(crate) fn socket_name(name: &str, pid: u32) -> String {
    format!("{name}-{pid}.sock")
}

/// `name` with anything but letters, digits, `.`, `_` and `-` replaced,
/// so that it makes one file name.
pub(crate) fn clean_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("cluster{clean}")
    } else {
        clean
    }
}

/// The name and pid of a socket file named `<name>-<pid>.sock`.
pub fn parse_socket_name(file: &str) -> Option<(String, u32)> {
    let stem = file.strip_suffix(".sock")?;
    let (name, pid) = stem.rsplit_once('-')?;
    Some((name.to_owned(), pid.parse().ok()?))
}

/// The socket file, removed when dropped if it is still the one made.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.id && m.file_type().is_socket());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket at `path`, mode 0600. A socket already there that no
/// one answers on (its process died) is replaced; a live one, or any other
/// kind of file, is refused. The file is `owner`'s.
pub(crate) fn bind(path: &Path, owner: Owner) -> Result<(UnixListener, SocketFile), Error> {
    let io_error = |what: &'static str| {
        move |source| Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(Error::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(io_error("removing the stale control socket"))?;
        }
        Ok(_) => {
            return Err(Error::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("reading the control socket's path")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_error("binding the control socket"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("setting the control socket's mode"))?;
    owner
        .give(path)
        .map_err(io_error("giving the control socket to its user"))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_error("reading the control socket"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_error("setting the control socket non-blocking"))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_chosen_in_order() {
        let p = PathBuf::from;
        assert_eq!(control_dir_from(Some(p("off")), Some(p("/r")), 1), None);
        assert_eq!(
            control_dir_from(Some(p("/c")), Some(p("/r")), 1),
            Some(p("/c"))
        );
        assert_eq!(
            control_dir_from(None, Some(p("/r")), 0),
            Some(p("/r/cluster-thread"))
        );
        assert_eq!(
            control_dir_from(Some(p("")), Some(p("relative")), 0),
            Some(p("/run/cluster-thread"))
        );
        assert_eq!(
            control_dir_from(None, None, 1000),
            Some(std::env::temp_dir().join("cluster-thread-1000"))
        );
        // Another user's runtime directory (root's `/`) is passed over.
        assert_eq!(
            control_dir_from(None, Some(p("/")), 1000),
            Some(std::env::temp_dir().join("cluster-thread-1000"))
        );
    }

    #[test]
    fn as_root_what_is_made_belongs_to_the_user_switched_to() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = scratch("switch").join("ctl");
        let nobody = Owner::new(Some((65534, 65534)));
        prepare_dir(&dir, nobody).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        let (_listener, file) = bind(&dir.join("s-1.sock"), nobody).unwrap();
        assert_eq!(std::fs::metadata(file.path()).unwrap().uid(), 65534);
        // Root's own directory is not the user's.
        let root_dir = scratch("switch-root");
        prepare_dir(&root_dir, Owner::new(None)).unwrap();
        let e = prepare_dir(&root_dir, nobody).unwrap_err().to_string();
        assert!(e.contains("the uid this process switches to 65534"), "{e}");
        drop(file);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(&root_dir).unwrap();
    }

    #[test]
    fn socket_names_round_trip() {
        assert_eq!(socket_name("same_port", 42), "same_port-42.sock");
        assert_eq!(
            parse_socket_name("my-app-42.sock"),
            Some(("my-app".into(), 42))
        );
        assert_eq!(parse_socket_name("x.sock"), None);
        assert_eq!(parse_socket_name("x-1.txt"), None);
        assert_eq!(clean_name("a b/c"), "a_b_c");
        assert_eq!(clean_name(".."), "cluster..");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cluster-ctl-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_directory_is_made_0700_and_a_loose_one_refused() {
        let dir = scratch("mode");
        prepare_dir(&dir, Owner::new(None)).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_dir(&dir, Owner::new(None)).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("0755"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let dir = scratch("link-target");
        prepare_dir(&dir, Owner::new(None)).unwrap();
        let link = scratch("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = prepare_dir(&link, Owner::new(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_other_files_are_not() {
        let dir = scratch("stale");
        prepare_dir(&dir, Owner::new(None)).unwrap();
        let path = dir.join("app-1.sock");
        drop(UnixListener::bind(&path).unwrap());
        let (live, file) = bind(&path, Owner::new(None)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: refused.
        assert!(matches!(
            bind(&path, Owner::new(None)),
            Err(Error::InUse { .. })
        ));
        drop(live);
        drop(file);
        assert!(!path.exists(), "removed when dropped");
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(matches!(
            bind(&path, Owner::new(None)),
            Err(Error::NotASocket { .. })
        ));
        assert!(path.exists(), "a file is never removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
