//! Demo: the service plus an embedded store model and synthetic provider load,
//! cycling through the four seed scenarios so the loop is visible on one machine.

mod driver;
mod store;

pub use driver::{Accounting, PHASES, Phase};
pub use store::{Announcement, StoreModel};

use crate::config::ServeConfig;
use crate::options::ServeArgs;
use crate::service::Service;
use crate::settings::{OptionErrors, duration};
use clap::Args;
use std::time::Duration;

/// Options of `mdp demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Compress the scenario's time by this factor: phases are this much shorter
    /// and each rate token carries this many times the items.
    #[arg(long, env = "MDP_DEMO_SPEED", default_value_t = 1.0)]
    pub speed: f64,
    /// How long each phase lasts at speed 1.
    #[arg(long, env = "MDP_DEMO_PHASE", default_value = "30s", value_parser = duration)]
    pub phase_duration: Duration,
    /// Stop after this many cycles through the four phases (0: run until interrupted).
    #[arg(long, env = "MDP_DEMO_CYCLES", default_value_t = 0)]
    pub cycles: u32,
    /// Items each rate token brings (one provider request returns a batch).
    #[arg(long, env = "MDP_DEMO_BATCH", default_value_t = 16)]
    pub batch: u64,
    /// Most items per second the store's workers can write.
    #[arg(long, env = "MDP_DEMO_WORKER_THROUGHPUT", default_value_t = 5000)]
    pub worker_throughput: u64,
}

impl DemoArgs {
    /// Checks the demo's own options, reporting every refused one.
    pub fn validate(&self) -> Result<(), OptionErrors> {
        let mut errors = OptionErrors::default();
        if !(0.1..=1000.0).contains(&self.speed) {
            errors.refuse(
                "speed",
                format!("must be a number from 0.1 to 1000, got {}", self.speed),
            );
        }
        if self.phase_duration < Duration::from_secs(1) {
            errors.refuse("phase-duration", "must be at least 1s");
        }
        if self.batch == 0 {
            errors.refuse("batch", "must be >= 1");
        }
        if self.worker_throughput == 0 {
            errors.refuse("worker-throughput", "must be >= 1 item/s");
        }
        errors.into_result()
    }
}

/// Shortest poll interval of the compressed demo.
const MIN_POLL: Duration = Duration::from_millis(50);

/// Compresses the service's holds and windows by `speed`, as the phases are:
/// the relax hold, the recovery ramp, the TTLs, the replica shrink hold and the
/// poll interval (at least [`MIN_POLL`]; the timeout within it, the pull TTL at
/// least three polls).
fn compress_time(serve: &mut ServeArgs, speed: f64) {
    if speed == 1.0 {
        return;
    }
    let engine = &mut serve.engine;
    let control = &mut engine.control;
    control.relax_after = control.relax_after.div_f64(speed);
    control.recovery_ramp = control.recovery_ramp.div_f64(speed);
    control.feedback_ttl = control.feedback_ttl.map(|ttl| ttl.div_f64(speed));
    let pull = &mut engine.pull;
    pull.pull_interval = pull.pull_interval.div_f64(speed).max(MIN_POLL);
    pull.pull_timeout = pull.pull_timeout.div_f64(speed).min(pull.pull_interval);
    pull.pull_ttl = pull.pull_ttl.div_f64(speed).max(pull.pull_interval * 3);
    engine.pods.replicas_shrink_hold = engine.pods.replicas_shrink_hold.div_f64(speed);
}

/// Runs `mdp demo` until SIGTERM/SIGINT or the last cycle.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    args.validate()?;
    let store = driver::StoreServer::start().await?;
    let mut serve = args.serve.clone();
    // The store model is polled like a real store in pull mode, and pushes its
    // transitions like the real broadcaster: both intake paths run.
    let pull = &mut serve.engine.pull;
    if pull.store_metrics_url.is_none() {
        pull.store_metrics_url = Some(store.metrics_url());
        pull.pull_interval = Duration::from_secs(1);
        pull.pull_timeout = Duration::from_millis(500);
    }
    compress_time(&mut serve, args.speed);
    let config = ServeConfig::try_from(serve)?;
    let service = Service::start(config).await?;
    let addr = service.local_addr()?;
    let ctx = service.ctx().clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            () = crate::service::termination() => {}
            _ = done_rx => {}
        }
    };
    let server = tokio::spawn(service.run(signal));
    driver::print_banner(addr, &args);
    let accounting = driver::Driver::new(&args, ctx, store, addr).run().await;
    let _ = done_tx.send(());
    server.await??;
    println!("{accounting}");
    if accounting.balances() {
        Ok(())
    } else {
        anyhow::bail!("item accounting does not balance: {accounting}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        args: DemoArgs,
    }

    fn demo(argv: &[&str]) -> DemoArgs {
        let mut all = vec!["demo"];
        all.extend_from_slice(argv);
        Demo::try_parse_from(all).expect("parses").args
    }

    #[test]
    fn holds_and_windows_scale_with_the_speed() {
        let mut serve = demo(&[]).serve;
        serve.engine.pull.pull_interval = Duration::from_secs(1);
        serve.engine.pull.pull_timeout = Duration::from_millis(500);
        compress_time(&mut serve, 10.0);
        let engine = &serve.engine;
        assert_eq!(engine.control.relax_after, Duration::from_millis(300));
        assert_eq!(engine.pull.pull_interval, Duration::from_millis(100));
        assert_eq!(engine.pull.pull_timeout, Duration::from_millis(50));
        assert_eq!(engine.pull.pull_ttl, Duration::from_secs(3));
        assert_eq!(
            engine.pods.replicas_shrink_hold,
            Duration::from_millis(1500)
        );
        crate::config::ServeConfig::try_from(serve).expect("still a valid configuration");

        let mut fast = demo(&[]).serve;
        compress_time(&mut fast, 1000.0);
        assert_eq!(fast.engine.pull.pull_interval, MIN_POLL);
        crate::config::ServeConfig::try_from(fast).expect("valid at the top speed too");
    }

    #[test]
    fn every_refused_demo_option_is_reported() {
        let err = demo(&["--speed", "0", "--batch", "0"])
            .validate()
            .expect_err("refused");
        assert_eq!(err.options(), ["speed", "batch"]);
    }
}
