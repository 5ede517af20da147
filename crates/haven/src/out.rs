//! Printing to standard output without panicking when the reader goes away
//! (`haven lists stats | head`): a closed pipe ends the program quietly.

use std::io::Write;

pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("haven: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// `println!` that survives a closed pipe.
macro_rules! say {
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*)) };
}
