//! `monit`: `ls` redrawn every second with plain ANSI (home, clear), in the
//! terminal's raw mode so that `q` quits at once; fits 80×24. When the
//! socket goes (a hot upgrade), it follows the program's name to the new
//! process.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use cluster_ctl::client::Client;
use cluster_ctl::protocol::{Body, Command};
use nix::sys::termios::{self, SetArg, Termios};

use crate::render;
use crate::target::{self, Target};

const WIDTH: usize = 80;
const HEIGHT: usize = 24;

/// The terminal's settings, put back when dropped.
struct Raw(Option<Termios>);

impl Raw {
    fn enter() -> Raw {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Raw(None);
        }
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return Raw(None);
        };
        let mut raw = saved.clone();
        // Keys one at a time, not echoed; Ctrl-C still a signal.
        raw.local_flags
            .remove(termios::LocalFlags::ICANON | termios::LocalFlags::ECHO);
        raw.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 0;
        raw.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 0;
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        Raw(Some(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
        // Show the cursor again.
        print!("\x1b[?25h");
        let _ = std::io::stdout().flush();
    }
}

/// Waits up to `timeout` for a key; true for `q` (or end of input).
fn quit_within(timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let end = std::time::Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return false,
            Ok(_) => {
                let mut key = [0u8; 16];
                match stdin.lock().read(&mut key) {
                    Ok(0) => return true,
                    Ok(n) => {
                        if key[..n].iter().any(|&k| k == b'q' || k == b'Q') {
                            return true;
                        }
                    }
                    Err(_) => return true,
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                std::thread::sleep(left);
                return false;
            }
        }
    }
}

/// `follow`: when the socket goes, look the program's name up again (not
/// when the user named a pid or a socket).
pub(crate) fn run(first: &Target, follow: bool) -> Result<(), String> {
    let _raw = Raw::enter();
    let mut target = first.clone();
    let mut client: Option<Client> = None;
    let mut out = std::io::stdout();
    loop {
        let screen = match frame(&mut client, &target) {
            Ok(lines) => lines,
            Err(e) => {
                client = None;
                // Gone: the program's new process, after a hot upgrade.
                if follow {
                    if let Some(next) = target::select(None, None, target.name.as_deref())
                        .ok()
                        .and_then(|t| t.into_iter().next())
                    {
                        target = next;
                    }
                }
                vec![format!("{}: {e}", target.path.display())]
            }
        };
        let mut text = String::from("\x1b[?25l\x1b[H\x1b[2J");
        for line in screen.iter().take(HEIGHT - 1) {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("q: quit");
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        if quit_within(Duration::from_secs(1)) {
            let _ = out.write_all(b"\r\n");
            return Ok(());
        }
    }
}

/// One screen: the status, or why not.
fn frame(client: &mut Option<Client>, target: &Target) -> Result<Vec<String>, String> {
    if client.is_none() {
        let c = Client::connect(&target.path).map_err(|e| e.to_string())?;
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        *client = Some(c);
    }
    let Some(c) = client.as_mut() else {
        return Err("not connected".into());
    };
    let reply = c
        .call(Command::Ls, |_, _| {})
        .map_err(|e| e.to_string())?
        .ok_or("the cluster closed the connection")?;
    match reply.body {
        Body::Status(status) => {
            // Header and listeners first; then as many rows as fit.
            let fixed = 3 + status.listeners.len();
            let rows = HEIGHT.saturating_sub(fixed + 2);
            Ok(render::status_lines(&status, WIDTH, rows))
        }
        Body::Error { error } => Err(error),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
