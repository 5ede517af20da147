//! `haven` as a child process, for the benchmarks that run it whole.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;

use anyhow::{Result, bail};

/// A child process, killed when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody is listening on now.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `haven` binary beside this one (both built by `cargo build --release`).
pub(crate) fn haven_binary() -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("haven");
    if !path.exists() {
        bail!("{} is missing: run `cargo build --release` first", path.display());
    }
    Ok(path)
}
