//! One running plugin process: its pipes, the calls waiting for an answer, and how it dies.
//!
//! A process is alive until the first failure (exit, unreadable or oversized output, a protocol
//! violation, a timeout reported by the supervisor); it then fails every pending call with
//! that reason, kills its whole process group, and is never used again. The supervisor starts
//! a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::zeroize::Zeroize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::CallError;

type Reply = oneshot::Sender<Result<Value, CallError>>;

/// The state shared with the reader tasks.
struct Inner {
    plugin_id: Arc<str>,
    pid: Option<u32>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Mutex<HashMap<u64, Reply>>,
    /// Why and when the process died; set once.
    death: Mutex<Option<(String, Instant)>>,
    child: Mutex<Option<Child>>,
    max_message_bytes: usize,
    /// Credentials recently sent to this plugin, scrubbed from its stderr before logging.
    secrets: Arc<RecentSecrets>,
}

/// A running plugin process. Dropping it kills the process group.
pub(crate) struct Process {
    inner: Arc<Inner>,
    next_id: AtomicU64,
    tasks: [JoinHandle<()>; 2],
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another call panicked while holding it; the data (a map of
    // reply channels, a reason) stays consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn die(&self, reason: String) {
        {
            let mut death = lock(&self.death);
            if death.is_some() {
                return;
            }
            *death = Some((reason.clone(), Instant::now()));
        }
        let pending: Vec<Reply> = lock(&self.pending).drain().map(|(_, r)| r).collect();
        for reply in pending {
            let _ = reply.send(Err(CallError::Failed(reason.clone())));
        }
        kill_group(self.pid);
        if let Some(child) = lock(&self.child).as_mut() {
            let _ = child.start_kill();
        }
    }

    fn dispatch(&self, line: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| format!("plugin wrote invalid JSON on stdout ({e})"))?;
        let obj = value
            .as_object()
            .ok_or("plugin wrote a JSON value that is not a JSON-RPC response")?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err("plugin wrote a message without \"jsonrpc\": \"2.0\"".into());
        }
        let id = obj
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("plugin wrote a message without a numeric id")?;
        let outcome = match (obj.get("result"), obj.get("error")) {
            (Some(result), None) => Ok(result.clone()),
            (None, Some(error)) => {
                let code = error.get("code").and_then(Value::as_i64);
                let message = error.get("message").and_then(Value::as_str);
                match (code, message) {
                    (Some(code), Some(message)) => Err(CallError::Plugin {
                        code,
                        message: message.to_owned(),
                        reason: error
                            .pointer("/data/reason")
                            .and_then(Value::as_str)
                            .and_then(super::protocol::parse_reason),
                    }),
                    _ => return Err("plugin wrote an error without code and message".into()),
                }
            }
            _ => {
                return Err(
                    "plugin wrote a response with both or neither of result and error".into(),
                );
            }
        };
        // An unknown id is an answer to a call whose caller gave up: dropped.
        if let Some(reply) = lock(&self.pending).remove(&id) {
            let _ = reply.send(outcome);
        } else {
            tracing::debug!(message = "Dropped a plugin answer nobody waits for.", plugin = %self.plugin_id, id);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads (it
        // was spawned with process_group(0)); no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}

/// Reads one line of at most `max` bytes. `Ok(None)` at end of input; `Err` with the reason
/// otherwise (a line longer than `max`, or cut by the end of input).
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<()>, String> {
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = reader
        .take(limit)
        .read_until(b'\n', buf)
        .await
        .map_err(|e| format!("reading the plugin's stdout failed: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(()));
    }
    if buf.len() > max {
        Err(format!(
            "plugin wrote a message larger than the limit of {max} bytes"
        ))
    } else {
        Err("plugin's stdout ended in the middle of a message".into())
    }
}

async fn read_stdout(inner: Arc<Inner>, stdout: tokio::process::ChildStdout) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    // Runs until the process's stdout closes or it breaks the protocol.
    let reason = loop {
        match read_line(&mut reader, &mut buf, inner.max_message_bytes).await {
            Ok(Some(())) if buf.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Some(())) => {
                if let Err(reason) = inner.dispatch(&buf) {
                    break reason;
                }
            }
            Ok(None) => {
                let child = lock(&inner.child).take();
                let status = match child {
                    Some(mut child) => {
                        tokio::time::timeout(Duration::from_millis(500), child.wait()).await
                    }
                    None => Ok(Err(std::io::Error::other("no child"))),
                };
                break match status {
                    Ok(Ok(status)) => format!("plugin process exited ({status})"),
                    _ => "plugin closed its stdout".to_owned(),
                };
            }
            Err(reason) => break reason,
        }
    };
    buf.zeroize();
    inner.die(reason);
}

/// The credentials most recently sent to one plugin (at most [`RecentSecrets::CAPACITY`]),
/// kept only to scrub them from the plugin's stderr: a plugin that logs its credential must
/// not get it into the daemon's logs.
#[derive(Default)]
pub(crate) struct RecentSecrets(Mutex<std::collections::VecDeque<super::Credential>>);

impl RecentSecrets {
    const CAPACITY: usize = 64;
    /// Shorter values are not scrubbed (they would match everywhere).
    const MIN_LEN: usize = 4;

    pub(crate) fn remember(&self, credential: &super::Credential) {
        if credential.expose().len() < Self::MIN_LEN {
            return;
        }
        let mut recent = lock(&self.0);
        recent.retain(|c| c.expose() != credential.expose());
        if recent.len() == Self::CAPACITY {
            recent.pop_front();
        }
        recent.push_back(credential.clone());
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for c in lock(&self.0).iter() {
            if text.contains(c.expose()) {
                text = text.replace(c.expose(), "[REDACTED]");
            }
        }
        text
    }
}

/// Most stderr lines logged per plugin process and second; the rest are counted and reported
/// as one line, so a plugin cannot flood the daemon's logs.
pub(crate) const MAX_STDERR_LINES_PER_SEC: u32 = 100;

async fn read_stderr(inner: Arc<Inner>, stderr: tokio::process::ChildStderr, max_line: usize) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut skipping = false;
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    // Runs until the process's stderr closes.
    loop {
        buf.clear();
        let limit = u64::try_from(max_line).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let complete = buf.last() == Some(&b'\n');
        if window.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                tracing::warn!(
                    target: "connectors::plugin",
                    message = "Plugin stderr lines dropped (rate limit).",
                    plugin = %inner.plugin_id,
                    dropped,
                );
            }
            (window, logged, dropped) = (Instant::now(), 0, 0);
        }
        if skipping {
            // The rest of an over-long line: read and dropped, in `max_line` chunks.
        } else if logged >= MAX_STDERR_LINES_PER_SEC {
            dropped += 1;
        } else {
            logged += 1;
            let text = inner.secrets.scrub(&String::from_utf8_lossy(&buf));
            tracing::info!(
                target: "connectors::plugin",
                message = "Plugin stderr.",
                plugin = %inner.plugin_id,
                line = ?text.trim_end(),
                truncated = !complete,
            );
        }
        skipping = !complete;
    }
}

impl Process {
    /// Takes over a spawned child (with piped stdio).
    pub(crate) fn start(
        plugin_id: Arc<str>,
        mut child: Child,
        max_message_bytes: usize,
        max_stderr_line: usize,
        secrets: Arc<RecentSecrets>,
    ) -> Self {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let inner = Arc::new(Inner {
            plugin_id,
            pid: child.id(),
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            death: Mutex::new(None),
            child: Mutex::new(Some(child)),
            max_message_bytes,
            secrets,
        });
        let reader = match stdout {
            Some(out) => tokio::spawn(read_stdout(inner.clone(), out)),
            None => tokio::spawn(std::future::ready(())),
        };
        let errors = match stderr {
            Some(err) => tokio::spawn(read_stderr(inner.clone(), err, max_stderr_line)),
            None => tokio::spawn(std::future::ready(())),
        };
        Self {
            inner,
            next_id: AtomicU64::new(1),
            tasks: [reader, errors],
        }
    }

    /// The process id (also its process group id).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.inner.pid
    }

    /// Why the process died and when, if it did.
    pub(crate) fn death(&self) -> Option<(String, Instant)> {
        lock(&self.inner.death).clone()
    }

    /// Kills the process, failing its pending calls with `reason`.
    pub(crate) fn kill(&self, reason: String) {
        self.inner.die(reason);
    }

    /// Sends one request and waits for its answer (no timeout here: the caller sets one).
    ///
    /// # Errors
    /// [`CallError::Plugin`] for a JSON-RPC error answer; [`CallError::Failed`] when the
    /// process is dead, dies before answering, or the request is larger than the limit.
    pub(crate) async fn request(
        &self,
        method: &str,
        mut params: Value,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // The caller's trace goes along, for a plugin to continue on its own calls.
        if let (Value::Object(fields), Some(traceparent)) =
            (&mut params, crate::trace::traceparent())
        {
            fields.insert(
                crate::trace::TRACEPARENT.to_owned(),
                Value::String(traceparent),
            );
        }
        let mut line = serde_json::to_vec(&json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": method,
            "params": params,
        }))
        .map_err(|e| CallError::Failed(format!("encoding the request failed: {e}")))?;
        drop(params);
        line.push(b'\n');
        let result = self.send(id, &line).await;
        line.zeroize();
        result?.await
    }

    async fn send(
        &self,
        id: u64,
        line: &[u8],
    ) -> Result<impl Future<Output = Result<Value, CallError>> + use<>, CallError> {
        if line.len() > self.inner.max_message_bytes {
            return Err(CallError::Failed(format!(
                "the request is larger than the limit of {} bytes",
                self.inner.max_message_bytes
            )));
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        let guard = PendingGuard {
            inner: self.inner.clone(),
            id,
        };
        if let Some((reason, _)) = self.death() {
            return Err(CallError::Failed(reason));
        }
        {
            let mut stdin = self.inner.stdin.lock().await;
            let Some(pipe) = stdin.as_mut() else {
                return Err(CallError::Failed("plugin stdin is closed".into()));
            };
            let written = async {
                pipe.write_all(line).await?;
                pipe.flush().await
            }
            .await;
            if let Err(e) = written {
                drop(stdin);
                // The process is probably gone: give the stdout reader a moment to report
                // why (its exit status), which says more than a broken pipe.
                for _ in 0..25 {
                    if self.death().is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.inner
                    .die(format!("writing to the plugin's stdin failed: {e}"));
                return Err(CallError::Failed(
                    self.death().map_or_else(|| e.to_string(), |d| d.0),
                ));
            }
        }
        let inner = self.inner.clone();
        Ok(async move {
            let _guard = guard;
            match rx.await {
                Ok(outcome) => outcome,
                Err(_) => Err(CallError::Failed(
                    lock(&inner.death)
                        .as_ref()
                        .map_or_else(|| "plugin process stopped".into(), |d| d.0.clone()),
                )),
            }
        })
    }
}

/// Forgets a pending call whose caller stopped waiting (timeout, cancellation).
struct PendingGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.inner.die("plugin process stopped".into());
    }
}
