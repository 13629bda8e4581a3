//! One component child process: the launcher executable re-run as
//! `<launcher> component <name> --exit-when-stdin-closes -- <args>` (or any
//! other command), its stdout and stderr appended to a log file, the
//! addresses it prints picked from its stdout, and stopped (SIGINT, then
//! SIGKILL) when dropped.

use crate::component::Component;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a stopped child may take to exit after SIGINT before it is
/// killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of a child's log shown in errors.
const LOG_TAIL_LINES: usize = 20;

/// Why a child process could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file or the process could not be created.
    #[error("{name}: cannot start: {source}")]
    Spawn {
        /// The child's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The child exited while it was expected to run.
    #[error("{name} exited ({status}); last lines of {log}:\n{tail}")]
    Exited {
        /// The child's name.
        name: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The child did not print the expected line in time.
    #[error("{name} did not report {what} within {timeout:?}; last lines of {log}:\n{tail}")]
    Timeout {
        /// The child's name.
        name: String,
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
}

/// What to run in a child process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The child's name in progress lines, errors and its log file name.
    pub name: String,
    /// The component.
    pub component: Component,
    /// The component's own command-line arguments.
    pub args: Vec<String>,
    /// Environment variables set for the child (over the inherited ones).
    pub env: Vec<(String, String)>,
}

/// A running component child process; stopped when dropped.
#[derive(Debug)]
pub struct ComponentProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log_path: PathBuf,
}

impl ComponentProcess {
    /// Starts `launch` with `launcher` (an executable with the `component`
    /// subcommand, normally `llmd-stack` itself); its output goes to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(
        launcher: &Path,
        launch: &Launch,
        log_dir: &Path,
    ) -> Result<ComponentProcess, ProcessError> {
        let mut command = Command::new(launcher);
        command
            .arg("component")
            .arg(launch.component.name())
            .arg("--exit-when-stdin-closes")
            .arg("--")
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)));
        ComponentProcess::spawn_command(&launch.name, command, log_dir)
    }

    /// Starts any `command` (e.g. a service in another language) the same
    /// way: output to `<log_dir>/<name>.log`, stdout lines available to
    /// [`ComponentProcess::wait_for_line`], stdin a pipe closed when the
    /// process is dropped.
    pub fn spawn_command(
        name: &str,
        mut command: Command,
        log_dir: &Path,
    ) -> Result<ComponentProcess, ProcessError> {
        let spawn_error = |source| ProcessError::Spawn {
            name: name.to_owned(),
            source,
        };
        let log_path = log_dir.join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(spawn_error)?;
        let stderr = log.try_clone().map_err(spawn_error)?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(spawn_error)?;
        let (sender, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::Builder::new()
                .name(format!("{name}-stdout"))
                .spawn(move || copy_lines(stdout, log, &sender))
                .map_err(spawn_error)?;
        }
        Ok(ComponentProcess {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log_path,
        })
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest
    /// of it, trimmed (e.g. the address after `... listening on `).
    pub fn wait_for_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.exited().unwrap_or_else(|| ProcessError::Timeout {
                        name: self.name.clone(),
                        what: format!("{prefix:?}"),
                        timeout,
                        log: self.log_path.display().to_string(),
                        tail: self.log_tail(),
                    }));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map_or_else(
                        |error| format!("status unknown: {error}"),
                        |status| status.to_string(),
                    );
                    return Err(self.exited_error(status));
                }
            }
        }
    }

    /// An error if the child has exited.
    pub fn exited(&mut self) -> Option<ProcessError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.exited_error(status.to_string())),
            Ok(None) => None,
            Err(error) => Some(self.exited_error(format!("status unknown: {error}"))),
        }
    }

    fn exited_error(&self, status: String) -> ProcessError {
        ProcessError::Exited {
            name: self.name.clone(),
            status,
            log: self.log_path.display().to_string(),
            tail: self.log_tail(),
        }
    }

    /// The last lines of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Asks the child to stop (SIGINT, as Ctrl-C would) without waiting;
    /// nothing if it has already exited.
    pub fn interrupt(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            send_signal(self.child.id(), libc::SIGINT);
        }
    }

    /// Kills the child at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// Asks the child to stop (SIGINT, as Ctrl-C would), waits up to
    /// five seconds, then kills it; returns how it exited.
    pub fn stop(&mut self) -> std::io::Result<ExitStatus> {
        self.interrupt();
        self.wait_or_kill()
    }

    /// Asks the child to stop with SIGTERM (as Kubernetes and process
    /// supervisors do), waits up to five seconds, then kills it; returns
    /// how it exited.
    pub fn terminate(&mut self) -> std::io::Result<ExitStatus> {
        self.ask_to_terminate();
        self.wait_or_kill()
    }

    /// Asks the child to stop with SIGTERM without waiting; nothing if it
    /// has already exited.
    pub fn ask_to_terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            send_signal(self.child.id(), libc::SIGTERM);
        }
    }

    fn wait_or_kill(&mut self) -> std::io::Result<ExitStatus> {
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        self.child.wait()
    }
}

impl Drop for ComponentProcess {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("{}: could not be stopped: {error}", self.name);
        }
        // Closing stdin would stop the child too; it is already gone.
        self.stdin.take();
    }
}

/// Sends `signal` to process `pid`.
fn send_signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions. Callers pass
        // the id of a child that has not been reaped yet, so it cannot name
        // another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Copies the child's stdout to its log and to `sender`, line by line.
fn copy_lines(stdout: impl std::io::Read, mut log: File, sender: &mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        // The receiving side may be gone (the process object dropped).
        let _ = sender.send(line);
    }
}
