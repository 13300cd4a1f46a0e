//! The daemon reading a builder's stdout and stderr: bounded lines, protocol messages turned into
//! events, and the tail of the log kept for the report.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc::UnboundedSender;

use trtfarm_build_protocol::{BUILDER_SEVERITY, BuilderDone, BuilderMessage, MAX_LINE, Progress};

/// How many log lines a [`super::BuilderReport`] keeps.
pub const LOG_TAIL_LINES: usize = 50;

/// Something a running builder reported, streamed to the daemon while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderEvent {
    /// The builder process started; always the first event. Its pid is also its process group.
    Spawned {
        /// The builder's process id.
        pid: u32,
    },
    /// A log line: TensorRT's (severity "error", "warning", ...) or the builder's own stderr and
    /// stray stdout (severity "builder").
    Log {
        /// TensorRT's severity, or "builder".
        severity: String,
        /// The line.
        text: String,
    },
    /// An event of TensorRT's progress monitor.
    Progress(Progress),
}

/// The builder's final word, if it gave one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BuilderResult {
    /// It reported `Done`.
    Done(Box<BuilderDone>),
    /// It reported `Failed` with this message.
    Failed(String),
}

/// What the readers of both streams gather, shared between them.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// The last [`LOG_TAIL_LINES`] log lines, oldest first.
    pub(crate) tail: VecDeque<String>,
    /// The last result message on stdout.
    pub(crate) result: Option<BuilderResult>,
}

impl Collected {
    fn push_log(&mut self, severity: &str, text: &str) {
        if self.tail.len() == LOG_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(format!("{severity}: {text}"));
    }
}

/// Outcome of reading one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// The stream ended before any byte of a new line.
    Eof,
    /// A line (possibly unterminated at the end of the stream).
    Line {
        /// True if bytes beyond the limit were dropped.
        truncated: bool,
    },
}

/// Reads the next line into `line` (without the newline), keeping at most `max` bytes and
/// dropping the rest of a longer line.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut truncated = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if any {
                LineRead::Line { truncated }
            } else {
                LineRead::Eof
            });
        }
        any = true;
        let (content, used, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (&available[..newline], newline + 1, true),
            None => (available, available.len(), false),
        };
        let room = max - line.len();
        if content.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&content[..content.len().min(room)]);
        reader.consume(used);
        if complete {
            return Ok(LineRead::Line { truncated });
        }
    }
}

/// The text of a line as a person should see it.
fn line_text(line: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if truncated {
        format!("{text} [line truncated at {MAX_LINE} bytes]")
    } else {
        text.to_owned()
    }
}

/// What one stdout line means: a protocol message, or (anything else) a builder log line.
pub(crate) fn parse_stdout_line(line: &[u8], truncated: bool) -> BuilderMessage {
    if !truncated && let Ok(message) = serde_json::from_slice::<BuilderMessage>(line) {
        return message;
    }
    BuilderMessage::Log {
        severity: BUILDER_SEVERITY.to_owned(),
        text: line_text(line, truncated),
    }
}

/// Calls `each` with every line of `reader` and whether it was cut at [`MAX_LINE`], to the end.
async fn for_each_line<R: AsyncBufRead + Unpin>(mut reader: R, mut each: impl FnMut(&[u8], bool)) {
    let mut line = Vec::new();
    // A read error means the pipe is unusable; the exit status still tells what happened.
    while let Ok(LineRead::Line { truncated }) =
        read_line_bounded(&mut reader, &mut line, MAX_LINE).await
    {
        each(&line, truncated);
    }
}

/// Reads the builder's stdout to its end, forwarding log and progress and keeping the result.
pub(crate) async fn read_stdout<R: AsyncBufRead + Unpin>(
    reader: R,
    events: &UnboundedSender<BuilderEvent>,
    collected: &Mutex<Collected>,
) {
    for_each_line(reader, |line, truncated| {
        if line.is_empty() {
            return;
        }
        let event = match parse_stdout_line(line, truncated) {
            BuilderMessage::Log { severity, text } => {
                lock(collected).push_log(&severity, &text);
                BuilderEvent::Log { severity, text }
            }
            BuilderMessage::Progress(progress) => BuilderEvent::Progress(progress),
            BuilderMessage::Done(done) => {
                lock(collected).result = Some(BuilderResult::Done(Box::new(done)));
                return;
            }
            BuilderMessage::Failed { message } => {
                lock(collected).result = Some(BuilderResult::Failed(message));
                return;
            }
        };
        // The receiver going away only means nobody watches the stream; keep collecting.
        let _ = events.send(event);
    })
    .await;
}

/// Reads the builder's stderr to its end; every line is a builder log line.
pub(crate) async fn read_stderr<R: AsyncBufRead + Unpin>(
    reader: R,
    events: &UnboundedSender<BuilderEvent>,
    collected: &Mutex<Collected>,
) {
    for_each_line(reader, |line, truncated| {
        let text = line_text(line, truncated);
        if text.trim().is_empty() {
            return;
        }
        lock(collected).push_log(BUILDER_SEVERITY, &text);
        let _ = events.send(BuilderEvent::Log {
            severity: BUILDER_SEVERITY.to_owned(),
            text,
        });
    })
    .await;
}

/// Locks the collector; a poisoned lock still holds usable lines.
pub(crate) fn lock(collected: &Mutex<Collected>) -> std::sync::MutexGuard<'_, Collected> {
    collected.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(String, bool)> {
        let mut reader = input;
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let LineRead::Line { truncated } = read_line_bounded(&mut reader, &mut line, max)
            .await
            .unwrap()
        {
            out.push((String::from_utf8(line.clone()).unwrap(), truncated));
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let got = lines(b"short\n0123456789abc\n\nlast", 10).await;
        let expected = [
            ("short", false),
            ("0123456789", true),
            ("", false),
            ("last", false),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(s, t)| (s.to_string(), *t)).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_line_longer_than_the_reader_buffer_is_cut_at_the_limit() {
        let mut input = vec![b'x'; 3 * MAX_LINE];
        input.extend_from_slice(b"\nnext\n");
        // A small BufReader forces the line to arrive in many chunks.
        let mut reader = tokio::io::BufReader::with_capacity(1000, &input[..]);
        let mut line = Vec::new();
        let first = read_line_bounded(&mut reader, &mut line, MAX_LINE).await;
        assert_eq!(first.unwrap(), LineRead::Line { truncated: true });
        assert_eq!(line.len(), MAX_LINE);
        let second = read_line_bounded(&mut reader, &mut line, MAX_LINE).await;
        assert_eq!(second.unwrap(), LineRead::Line { truncated: false });
        assert_eq!(line, b"next");
        let end = read_line_bounded(&mut reader, &mut line, MAX_LINE).await;
        assert_eq!(end.unwrap(), LineRead::Eof);
    }

    #[test]
    fn stdout_lines_parse_as_messages_or_become_worker_logs() {
        let log = parse_stdout_line(br#"{"type":"log","severity":"warning","text":"hm"}"#, false);
        assert_eq!(
            log,
            BuilderMessage::Log {
                severity: "warning".into(),
                text: "hm".into()
            }
        );
        let stray = parse_stdout_line(b"Segmentation hint: not json\r", false);
        assert_eq!(
            stray,
            BuilderMessage::Log {
                severity: BUILDER_SEVERITY.into(),
                text: "Segmentation hint: not json".into()
            }
        );
        // A truncated line is never trusted as a message, even if the cut left valid JSON.
        let cut = parse_stdout_line(br#"{"type":"failed","message":"x"}"#, true);
        match cut {
            BuilderMessage::Log { severity, text } => {
                assert_eq!(severity, BUILDER_SEVERITY);
                assert!(text.ends_with("[line truncated at 65536 bytes]"), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn stdout_reader_forwards_events_and_keeps_the_last_result() {
        let input = concat!(
            r#"{"type":"log","severity":"info","text":"parsing"}"#,
            "\n",
            r#"{"type":"progress","kind":"step","phase":"p","parent":null,"step":1,"steps":2}"#,
            "\nnot json\n",
            r#"{"type":"failed","message":"first"}"#,
            "\n",
            r#"{"type":"failed","message":"second"}"#,
            "\n"
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let collected = Mutex::new(Collected::default());
        read_stdout(input.as_bytes(), &tx, &collected).await;
        drop(tx);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            &events[1],
            BuilderEvent::Progress(Progress {
                step: 1,
                steps: 2,
                ..
            })
        ));
        let collected = collected.into_inner().unwrap();
        assert_eq!(
            collected.result,
            Some(BuilderResult::Failed("second".into()))
        );
        assert_eq!(
            Vec::from(collected.tail),
            vec!["info: parsing".to_string(), "builder: not json".to_string()]
        );
    }

    #[tokio::test]
    async fn the_log_tail_keeps_only_the_last_lines() {
        let input: String = (0..LOG_TAIL_LINES + 7)
            .map(|i| format!("line {i}\n"))
            .collect();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let collected = Mutex::new(Collected::default());
        read_stderr(input.as_bytes(), &tx, &collected).await;
        let tail = collected.into_inner().unwrap().tail;
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(tail.front().unwrap(), "builder: line 7");
        assert_eq!(
            tail.back().unwrap(),
            &format!("builder: line {}", LOG_TAIL_LINES + 6)
        );
    }
}
