//! Container logs in the CRI file format kubelet reads:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <text>\n`, where `P` marks a partial line
//! (a long line split, or a line the container has not ended yet) and `F` the end of one.
//!
//! The shim writes them, rotating a file when it passes the size limit (kubelet's
//! `containerLogMaxSize`); the agent reads them back for `kubectl logs`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Lines longer than this are split into partial records, as containerd does (16 KiB).
const MAX_RECORD: usize = 16 * 1024;

/// Which output of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to a container's log file and rotates it: when the file passes
/// `max_bytes` it becomes `<path>.1` (replacing an older one) and a new file starts.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            written,
            max_bytes,
        })
    }

    /// Writes `text` (which may hold several lines) as records of `stream`. A trailing piece
    /// without a newline is written as a partial record, so nothing waits in memory.
    pub fn write(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let now = jiff::Timestamp::now();
        let mut record = Vec::with_capacity(text.len() + 64);
        for piece in text.split_inclusive(|&b| b == b'\n') {
            let (line, complete) = match piece.strip_suffix(b"\n") {
                Some(line) => (line, true),
                None => (piece, false),
            };
            // An empty line is still one record; a long one becomes several.
            let chunks: Vec<&[u8]> = if line.is_empty() {
                vec![line]
            } else {
                line.chunks(MAX_RECORD).collect()
            };
            let count = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                write_record(&mut record, now, stream, complete && i + 1 == count, chunk);
            }
        }
        self.file.write_all(&record)?;
        self.written += record.len() as u64;
        if self.written >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn write_record(out: &mut Vec<u8>, at: jiff::Timestamp, stream: Stream, full: bool, text: &[u8]) {
    // Fixed nine fraction digits keep records sortable as text, as containerd writes them.
    let _ = write!(
        out,
        "{} {} {} ",
        format_timestamp(at),
        stream.as_str(),
        if full { "F" } else { "P" }
    );
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// RFC 3339 with nanoseconds, in UTC: `2026-11-24T18:00:00.123456789Z`.
pub fn format_timestamp(at: jiff::Timestamp) -> String {
    format!("{at:.9}")
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// What `kubectl logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last this many lines.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this instant (`--since`, `--since-time`).
    pub since: Option<jiff::Timestamp>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes (`limitBytes`).
    pub limit_bytes: Option<usize>,
}

/// One complete line of output, joined from its partial records.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub timestamp: String,
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// Parses records from `reader`, joining partial records into lines. Malformed records (a
/// file cut short by a crash) are skipped rather than failing the whole read.
pub fn parse_lines(reader: impl BufRead, out: &mut Vec<LogLine>) -> io::Result<()> {
    let mut pending: Option<LogLine> = None;
    for record in reader.split(b'\n') {
        let record = record?;
        let Some((timestamp, stream, full, text)) = parse_record(&record) else {
            continue;
        };
        let line = pending.get_or_insert_with(|| LogLine {
            timestamp: timestamp.to_owned(),
            stream,
            text: Vec::new(),
        });
        line.text.extend_from_slice(text);
        if full {
            out.extend(pending.take());
        }
    }
    // A partial line at the end is output the container has not finished: show it.
    out.extend(pending);
    Ok(())
}

/// Parses one record (without its newline): (timestamp, stream, whether it ends a line, text).
pub fn parse_record(record: &[u8]) -> Option<(&str, Stream, bool, &[u8])> {
    let mut parts = record.splitn(4, |&b| b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some((timestamp, stream, full, parts.next().unwrap_or_default()))
}

/// Reads a container's log (the rotated file first, then the current one) and renders what
/// `options` select, as the text `kubectl logs` prints.
pub fn read_log(path: &Path, options: &LogOptions) -> io::Result<Vec<u8>> {
    let mut lines = Vec::new();
    for file in [rotated_path(path), path.to_owned()] {
        match File::open(&file) {
            Ok(f) => parse_lines(BufReader::new(f), &mut lines)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(render(&lines, options))
}

/// Renders lines as `kubectl logs` prints them, honouring since, tail, timestamps and limit.
pub fn render(lines: &[LogLine], options: &LogOptions) -> Vec<u8> {
    let since = options.since.map(format_timestamp);
    let selected: Vec<&LogLine> = lines
        .iter()
        .filter(|line| {
            since
                .as_deref()
                .is_none_or(|since| line.timestamp.as_str() >= since)
        })
        .collect();
    let skip = options
        .tail_lines
        .map_or(0, |tail| selected.len().saturating_sub(tail));
    let mut out = Vec::new();
    for line in &selected[skip..] {
        if options.timestamps {
            out.extend_from_slice(line.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.text);
        out.push(b'\n');
        if let Some(limit) = options.limit_bytes
            && out.len() >= limit
        {
            out.truncate(limit);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for file in [rotated_path(path), path.to_owned()] {
            if let Ok(f) = File::open(file) {
                parse_lines(BufReader::new(f), &mut lines).unwrap();
            }
        }
        lines
    }

    #[test]
    fn partial_writes_join_into_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 1 << 20).unwrap();
        writer.write(Stream::Stdout, b"hel").unwrap();
        writer.write(Stream::Stdout, b"lo\nworld\n").unwrap();
        writer.write(Stream::Stderr, b"oops\n").unwrap();
        let texts: Vec<_> = lines_of(&path)
            .into_iter()
            .map(|l| (l.stream, String::from_utf8(l.text).unwrap()))
            .collect();
        assert_eq!(
            texts,
            [
                (Stream::Stdout, "hello".into()),
                (Stream::Stdout, "world".into()),
                (Stream::Stderr, "oops".into())
            ]
        );
    }

    #[test]
    fn long_lines_are_split_into_partial_records_and_joined_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 1 << 20).unwrap();
        let long = vec![b'x'; MAX_RECORD * 2 + 5];
        let mut text = long.clone();
        text.push(b'\n');
        writer.write(Stream::Stdout, &text).unwrap();
        let raw = std::fs::read_to_string(&path).unwrap();
        assert_eq!(raw.lines().count(), 3);
        assert_eq!(lines_of(&path)[0].text, long);
    }

    #[test]
    fn rotation_keeps_the_previous_file_and_reads_span_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 200).unwrap();
        for i in 0..20 {
            writer
                .write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(rotated_path(&path).exists());
        let lines = lines_of(&path);
        assert_eq!(
            String::from_utf8_lossy(&lines.last().unwrap().text),
            "line 19"
        );
        assert!(std::fs::metadata(&path).unwrap().len() < 200);
    }

    #[test]
    fn render_honours_tail_timestamps_and_limit() {
        let line = |t: &str, s: &str| LogLine {
            timestamp: t.into(),
            stream: Stream::Stdout,
            text: s.into(),
        };
        let lines = [
            line("2026-01-01T00:00:01.000000000Z", "a"),
            line("2026-01-01T00:00:02.000000000Z", "b"),
            line("2026-01-01T00:00:03.000000000Z", "c"),
        ];
        assert_eq!(render(&lines, &LogOptions::default()), b"a\nb\nc\n");
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            b"b\nc\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                }
            ),
            b""
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(1),
                    timestamps: true,
                    ..Default::default()
                }
            ),
            b"2026-01-01T00:00:03.000000000Z c\n"
        );
        let since = "2026-01-01T00:00:02Z".parse().unwrap();
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    since: Some(since),
                    ..Default::default()
                }
            ),
            b"b\nc\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    limit_bytes: Some(3),
                    ..Default::default()
                }
            ),
            b"a\nb"
        );
    }

    #[test]
    fn malformed_records_are_skipped() {
        let mut lines = Vec::new();
        parse_lines(
            &b"garbage\n2026-01-01T00:00:01Z stdout F ok\n2026 bad X y\n"[..],
            &mut lines,
        )
        .unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, b"ok");
    }
}
