//! The systemd readiness protocol (sd_notify), for `Type=notify` units: one datagram
//! such as `READY=1` sent to the unix socket that `$NOTIFY_SOCKET` names. Outside
//! systemd (no variable) every call does nothing, so tests and `hookd serve` by hand are
//! unaffected. A dozen lines of std replace the `sd-notify` crate: the protocol is one
//! `sendto`, and this keeps the dependency list and `unsafe` out of it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd the service is up: the listener is bound and the store is open.
pub fn ready() {
    send("READY=1\n");
}

/// Tells systemd a shutdown has begun, so `systemctl status` shows "deactivating"
/// while in-flight attempts finish instead of waiting silently.
pub fn stopping() {
    send("STOPPING=1\n");
}

/// Sends `state` if systemd asked for notifications. A failure is logged, never fatal:
/// systemd then times the start out, which is the right outcome and says why.
fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send_to(&path, state) {
        tracing::warn!(%error, socket = ?path, state = state.trim_end(), "cannot notify systemd");
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    let address = socket_address(path)?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// A path, or a Linux abstract name when it starts with '@' (the '@' stands for the
/// leading NUL byte).
fn socket_address(path: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    match path.as_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 64];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn sends_the_state_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\n").unwrap();
        assert_eq!(receive(&systemd), "READY=1\n");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        let name = format!("hookd-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&address).unwrap();
        send_to(format!("@{name}").as_ref(), "STOPPING=1\n").unwrap();
        assert_eq!(receive(&systemd), "STOPPING=1\n");
    }

    #[test]
    fn a_relative_name_is_refused() {
        let error = send_to("notify".as_ref(), "READY=1\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
