//! The resume cursor carried in the SSE `id:` line in history mode.
//!
//! A user's events and the broadcasts reach the bridge through two subscriptions
//! that may interleave differently from the order JetStream stored them in, so one
//! "last sequence seen" could skip an event of the other kind. The cursor therefore
//! holds both: `<last user-event sequence>:<last broadcast sequence>`, e.g. `1734:1690`.
//! Clients treat it as opaque and send it back in `Last-Event-ID`.

use core::fmt;

/// Where a history-mode stream stands: every event of the user with a stream
/// sequence up to `user`, and every broadcast up to `broadcast`, has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Last user-event sequence covered.
    pub user: u64,
    /// Last broadcast sequence covered.
    pub broadcast: u64,
}

/// A `Last-Event-ID` that is not a history cursor (e.g. a live-mode id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorError;

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a resume cursor (expected <user-seq>:<broadcast-seq>)")
    }
}

impl std::error::Error for CursorError {}

impl Cursor {
    /// Parses `u:b` (both decimal, no sign, no spaces).
    ///
    /// ```
    /// use realtime_bridge_wire::cursor::Cursor;
    /// assert_eq!(Cursor::parse("1734:1690").unwrap(), Cursor { user: 1734, broadcast: 1690 });
    /// assert!(Cursor::parse("abc-1").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, CursorError> {
        let (u, b) = s.split_once(':').ok_or(CursorError)?;
        Ok(Self { user: parse_seq(u)?, broadcast: parse_seq(b)? })
    }

    /// The smallest of the two positions: a catch-up must start right after it.
    pub fn min(&self) -> u64 {
        self.user.min(self.broadcast)
    }

    /// Writes the SSE `id:` line for this cursor (`id: u:b\n`).
    pub fn write_id_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"id: ");
        crate::sse::push_u64(out, self.user);
        out.push(b':');
        crate::sse::push_u64(out, self.broadcast);
        out.push(b'\n');
    }

    /// Writes an `id:`-only block (`id: u:b\n\n`): it sets the client's Last-Event-ID
    /// without dispatching an event.
    ///
    /// ```
    /// use realtime_bridge_wire::cursor::Cursor;
    /// let mut out = Vec::new();
    /// Cursor { user: 3, broadcast: 4 }.write_id_block(&mut out);
    /// assert_eq!(out, b"id: 3:4\n\n");
    /// ```
    pub fn write_id_block(&self, out: &mut Vec<u8>) {
        self.write_id_line(out);
        out.push(b'\n');
    }
}

fn parse_seq(s: &str) -> Result<u64, CursorError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CursorError);
    }
    s.parse().map_err(|_| CursorError)
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.broadcast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_ids() {
        let c = Cursor { user: 7, broadcast: 0 };
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
        for bad in [
            "",
            ":",
            "1:",
            ":1",
            "1",
            "1:2:3",
            "-1:2",
            "+1:2",
            " 1:2",
            "a:1",
            "hDqsVFvX-1",
            "99999999999999999999999:1",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?}");
        }
        let mut line = Vec::new();
        Cursor { user: 1734, broadcast: 1690 }.write_id_line(&mut line);
        assert_eq!(line, b"id: 1734:1690\n");
        let mut block = Vec::new();
        Cursor { user: 1, broadcast: 0 }.write_id_block(&mut block);
        assert_eq!(block, b"id: 1:0\n\n");
        assert_eq!(Cursor { user: 5, broadcast: 3 }.min(), 3);
    }
}
