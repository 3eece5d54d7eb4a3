//! The state document and its live Server-Sent Events stream.

use super::Ctx;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warp::Reply;
use warp::reply::Response;
use warp::sse::Event;

/// The state document of `GET /api/v1/state` and of every stream message.
pub(super) fn state_json(ctx: &Ctx) -> Value {
    let snapshot = ctx.engine.current();
    let now = ctx.clock.now().as_secs_f64();
    let coordinators: Vec<Value> = snapshot
        .coordinators
        .iter()
        .map(|c| {
            let mut value = json!(c);
            value["age_seconds"] = json!((now - c.last_seen_seconds).max(0.0));
            value
        })
        .collect();
    let control = &ctx.config.control;
    let marks = control.watermarks;
    let replicas = ctx.replicas.borrow().clone();
    json!({
        "seq": snapshot.seq,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": ctx.clock.now().as_secs_f64(),
        "level": snapshot.level,
        "raw_level": snapshot.raw_level,
        "scale": snapshot.scale,
        "target_scale": snapshot.target_scale,
        "queue_depth": snapshot.queue_depth,
        "capacity": snapshot.capacity,
        "store_reachable": snapshot.store_reachable,
        "providers": ctx.rates.views(),
        "coordinators": coordinators,
        "thresholds": {
            "soft_watermark": marks.soft_at,
            "hard_watermark": marks.hard_at,
            "hard_release": marks.hard_release,
            "soft_release": marks.soft_release,
            "relax_after_seconds": control.relax_after.as_secs_f64(),
            "recovery_ramp_seconds": control.recovery_ramp.as_secs_f64(),
            "scale": {
                "ok": control.policy.ok,
                "soft": control.policy.soft,
                "hard": control.policy.hard,
            },
            "stale_level": control.stale_level,
            "feedback_ttl_seconds": control.push_ttl.map(|t| t.as_secs_f64()),
        },
        "feedback_enabled": ctx.config.feedback_enabled,
        "pull": ctx.config.pull.as_ref().map(|p| json!({
            "url": p.url,
            "interval_seconds": p.interval.as_secs_f64(),
            "consecutive_failures": snapshot.pull_failures,
        })),
        "flaps_suppressed": snapshot.flaps_suppressed,
        "replicas": replicas,
        "autoscaler": autoscaler_json(ctx, snapshot.queue_depth, snapshot.level, replicas.count),
    })
}

/// What the exported KEDA configuration would ask for right now, and why.
/// With the depth unknown, Prometheus has no depth sample: the trigger fails
/// and KEDA's fallback decides.
fn autoscaler_json(
    ctx: &Ctx,
    depth: Option<u64>,
    level: crate::level::Level,
    current: u32,
) -> Value {
    let config = &ctx.config.autoscale;
    let Some(depth) = depth.map(|d| d as f64) else {
        return fallback_json(config, current);
    };
    let recommendation = config.desired_replicas_now(depth, level, current);
    let triggers: Vec<Value> = config
        .triggers
        .iter()
        .zip(&recommendation.per_trigger)
        .map(|(trigger, reading)| {
            json!({
                "name": reading.name,
                "query": trigger.promql(),
                "value": reading.value,
                "threshold": trigger.threshold(),
                "metric_type": trigger.metric_type().as_str(),
                "desired": reading.desired,
                "active": reading.active,
            })
        })
        .collect();
    json!({
        "desired_replicas": recommendation.replicas,
        "min_replicas": config.min_replicas,
        "max_replicas": config.max_replicas,
        "trigger": recommendation.trigger,
        "reason": recommendation.reason,
        "keda_version": config.versions.keda.to_string(),
        "triggers": triggers,
    })
}

/// The autoscaler's view while the depth is unknown: the queue-depth query
/// returns nothing, and (with `ignoreNullValues: "false"`) KEDA counts it as
/// a failure until its fallback takes over.
fn fallback_json(config: &crate::autoscale::AutoscaleConfig, current: u32) -> Value {
    let (replicas, reason) = match &config.fallback {
        Some(fallback) => {
            let replicas = crate::autoscale::keda::fallback_replicas(fallback, current, config.versions.keda);
            (
                replicas,
                format!(
                    "queue depth unknown (the store does not answer): KEDA's fallback asks for {replicas} pods after {} failed reads",
                    fallback.failure_threshold
                ),
            )
        }
        None => (
            current,
            "queue depth unknown (the store does not answer): without a fallback the HPA keeps the current count".to_owned(),
        ),
    };
    json!({
        "desired_replicas": replicas,
        "min_replicas": config.min_replicas,
        "max_replicas": config.max_replicas,
        "trigger": "fallback",
        "fallback": true,
        "reason": reason,
        "keda_version": config.versions.keda.to_string(),
        "triggers": [],
    })
}

/// `GET /api/v1/stream`: a snapshot on every change and at least every second,
/// ending when the service shuts down.
pub(super) fn sse(ctx: Arc<Ctx>) -> Response {
    let mut changes = ctx.engine.snapshot.clone();
    changes.mark_changed();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown.clone();
    let state = (ctx, changes, ticks, shutdown);
    let events = futures_util::stream::unfold(
        state,
        |(ctx, mut changes, mut ticks, mut shutdown)| async move {
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                changed = changes.changed() => changed.ok()?,
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return None,
            }
            let event = Event::default()
                .event("state")
                .data(state_json(&ctx).to_string());
            Some((Ok::<_, Infallible>(event), (ctx, changes, ticks, shutdown)))
        },
    );
    warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
}
