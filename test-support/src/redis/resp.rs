//! Just enough RESP2 to send commands and read replies.

use std::io::{self, BufRead};

/// A reply from Redis (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3 foo`, or `None` for the nil bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `None` for the nil array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The text of a simple or bulk string reply.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Resp::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

/// A command as a RESP array of bulk strings.
pub(crate) fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply.
pub(crate) fn read(reader: &mut impl BufRead) -> io::Result<Resp> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| invalid("empty reply line"))?;
    match kind {
        "+" => Ok(Resp::Simple(rest.to_owned())),
        "-" => Ok(Resp::Error(rest.to_owned())),
        ":" => Ok(Resp::Integer(number(rest)?)),
        "$" => match usize::try_from(number(rest)?) {
            Err(_) => Ok(Resp::Bulk(None)),
            Ok(len) => {
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Resp::Bulk(Some(data)))
            }
        },
        "*" => match usize::try_from(number(rest)?) {
            Err(_) => Ok(Resp::Array(None)),
            Ok(len) => (0..len)
                .map(|_| read(reader))
                .collect::<io::Result<_>>()
                .map(|items| Resp::Array(Some(items))),
        },
        _ => Err(invalid("unknown reply type")),
    }
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches("\r\n").to_owned())
}

fn number(text: &str) -> io::Result<i64> {
    text.parse().map_err(|_| invalid("bad number in reply"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
