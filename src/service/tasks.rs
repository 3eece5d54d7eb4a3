//! The service's long-lived tasks, owned and joined: each must run until
//! shutdown, and one that ends or panics before that is a fault the process
//! does not survive (Kubernetes restarts it), never a silent half-death.

use std::collections::HashMap;
use std::panic::PanicHookInfo;
use tokio::task::{Id, JoinSet};

tokio::task_local! {
    /// The supervised task being polled, for the panic hook to name it.
    static TASK: &'static str;
}

/// A task that ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    pub name: &'static str,
    /// The panic message, when it panicked.
    pub panic: Option<String>,
}

impl std::fmt::Display for TaskExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.panic {
            Some(message) => write!(f, "the {} task panicked: {message}", self.name),
            None => write!(f, "the {} task ended on its own", self.name),
        }
    }
}

/// Named tasks on one [`JoinSet`].
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Starts `task` under `name`. A task named in `MDP_FAILPOINT` panics as
    /// it starts: how the tests check that a dying task takes the process down.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let fail = failpoint(name);
        let handle = self.set.spawn(TASK.scope(name, async move {
            if fail {
                panic!("failpoint {name} (MDP_FAILPOINT)");
            }
            task.await;
        }));
        self.names.insert(handle.id(), name);
    }

    /// How many tasks still run.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The next task to end; pending for ever when none is left.
    pub async fn next_exit(&mut self) -> TaskExit {
        let Some(joined) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        match joined {
            Ok((id, ())) => TaskExit {
                name: self.names.remove(&id).unwrap_or("unnamed"),
                panic: None,
            },
            Err(error) => {
                let name = self.names.remove(&error.id()).unwrap_or("unnamed");
                let panic = if error.is_panic() {
                    panic_message(error.into_panic().as_ref()).to_owned()
                } else {
                    "cancelled".to_owned()
                };
                TaskExit {
                    name,
                    panic: Some(panic),
                }
            }
        }
    }

    /// Aborts what still runs and waits for it; returns the names it aborted.
    pub async fn abort_all(mut self) -> Vec<&'static str> {
        self.set.abort_all();
        let mut aborted = Vec::new();
        while let Some(joined) = self.set.join_next_with_id().await {
            let id = match &joined {
                Ok((id, ())) => *id,
                Err(error) => error.id(),
            };
            aborted.extend(self.names.remove(&id));
        }
        aborted
    }
}

/// Makes every panic a fault the process does not survive: the hook logs the
/// task that panicked (or the thread, outside the supervised tasks), the
/// message and where, and exits with status 1, as the supervisor does for a
/// task that died. The binary installs it first thing; with it the release
/// build can abort on panic (no unwinding tables) and behave the same.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let line = panic_line(info, TASK.try_with(|name| *name).ok());
        tracing::error!("{line}; exiting so that the process is restarted");
        eprintln!("mdp: {line}; exiting so that the process is restarted");
        std::process::exit(1);
    }));
}

/// A panic's message: the text `panic!` was given, whichever form it took.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// "the control loop task panicked: <message> (at src/x.rs:1:2)".
fn panic_line(info: &PanicHookInfo<'_>, task: Option<&'static str>) -> String {
    let message = panic_message(info.payload());
    let whose = match task {
        Some(name) => format!("the {name} task"),
        None => {
            let thread = std::thread::current();
            format!("thread {:?}", thread.name().unwrap_or("unnamed"))
        }
    };
    match info.location() {
        Some(at) => format!("{whose} panicked: {message} (at {at})"),
        None => format!("{whose} panicked: {message}"),
    }
}

fn failpoint(name: &str) -> bool {
    std::env::var("MDP_FAILPOINT").is_ok_and(|value| value.split(',').any(|v| v.trim() == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_with_its_message() {
        let mut tasks = Tasks::default();
        tasks.spawn("steady", std::future::pending());
        tasks.spawn("fragile", async { panic!("lost /dev/urandom") });
        let exit = tasks.next_exit().await;
        assert_eq!(exit.name, "fragile");
        assert_eq!(exit.panic.as_deref(), Some("lost /dev/urandom"));
        assert_eq!(
            exit.to_string(),
            "the fragile task panicked: lost /dev/urandom"
        );
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks.abort_all().await, vec!["steady"]);
    }

    #[tokio::test]
    async fn a_task_that_returns_is_an_exit_too() {
        let mut tasks = Tasks::default();
        tasks.spawn("poller", async {});
        let exit = tasks.next_exit().await;
        assert_eq!(
            exit,
            TaskExit {
                name: "poller",
                panic: None
            }
        );
        assert!(tasks.is_empty());
    }
}
