//! Every metric family mdp exports, spelt once: name, help text, type and
//! labels. Telemetry encodes its `# HELP`/`# TYPE` lines from these; the KEDA
//! triggers, the alert rules and the Grafana panels take their names from
//! them, so a renamed metric cannot leave a query behind. The process
//! families (`process_*`) are the prometheus crate's and are not listed.

/// A family's type, as `# TYPE` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in the order the exposition writes them.
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind,
        labels,
    }
}

use Kind::{Counter, Gauge, Histogram};

// ---- The control loop's (section `control`). The first three are the gauges
// the KEDA triggers and the original dashboards read; their names and help
// texts are those of the service mdp replaces.
pub const SCALE_FACTOR: Family = family(
    "pipeline_rate_scale_factor",
    "Current rate scale factor applied to provider (0.0..1.0).",
    Gauge,
    &["provider"],
);
pub const BACKPRESSURE_STATE: Family = family(
    "pipeline_backpressure_state",
    "Backpressure state: 0=ok, 1=soft, 2=hard.",
    Gauge,
    &["provider"],
);
pub const QUEUE_DEPTH: Family = family(
    "pipeline_feedback_queue_depth",
    "Queue depth reported by feedback source (echo of store).",
    Gauge,
    &["source"],
);
/// `source` label value of [`QUEUE_DEPTH`]: the most severe live coordinator.
pub const QUEUE_DEPTH_SOURCE: &str = "store_coordinator";

pub const EVENTS_PROCESSED: Family = family(
    "feedback_events_processed_total",
    "Feedback events applied, by provider they scale and level.",
    Counter,
    &["level", "provider"],
);
pub const EVENTS_REJECTED: Family = family(
    "mdp_feedback_events_rejected_total",
    "Feedback events refused or ignored, by reason.",
    Counter,
    &["reason"],
);
pub const EVENT_TO_SCALE: Family = family(
    "mdp_feedback_event_to_scale_seconds",
    "Time from receiving a feedback event to the new scale being in force.",
    Histogram,
    &[],
);
pub const TRANSITIONS: Family = family(
    "mdp_backpressure_transitions_total",
    "Changes of the level driving the scale, by new level.",
    Counter,
    &["level"],
);
pub const FLAPS_SUPPRESSED: Family = family(
    "mdp_backpressure_flaps_suppressed_total",
    "Raw level changes absorbed by the relax hold without changing the scale.",
    Counter,
    &[],
);
pub const COORDINATORS: Family = family(
    "mdp_coordinators",
    "Coordinators tracked, by state (live or stale).",
    Gauge,
    &["state"],
);
pub const POLLS: Family = family(
    "mdp_pull_polls_total",
    "Polls of the store's metrics endpoint, by result.",
    Counter,
    &["result"],
);
pub const STORE_UP: Family = family(
    "mdp_store_up",
    "Whether the polled store answered its last poll (1) or not (0); absent in push mode.",
    Gauge,
    &[],
);
pub const BUILD_INFO: Family = family(
    "mdp_build_info",
    "Build information; always 1.",
    Gauge,
    &["commit", "rustc", "version"],
);
pub const EFFECTIVE_RATE: Family = family(
    "mdp_rate_effective_tokens_per_second",
    "Rate this replica grants per provider after scale and replica share.",
    Gauge,
    &["provider"],
);
pub const COORDINATOR_DEPTH: Family = family(
    "mdp_coordinator_queue_depth",
    "Last reported queue depth per store coordinator.",
    Gauge,
    &["coordinator"],
);
pub const COORDINATOR_CAPACITY: Family = family(
    "mdp_coordinator_queue_capacity",
    "Queue capacity per store coordinator.",
    Gauge,
    &["coordinator"],
);
pub const COORDINATOR_LEVEL: Family = family(
    "mdp_coordinator_level",
    "Level per store coordinator: 0=ok, 1=soft, 2=hard.",
    Gauge,
    &["coordinator"],
);
pub const COORDINATOR_STALE: Family = family(
    "mdp_coordinator_stale",
    "1 when a coordinator's feedback is stale (TTL passed or polls failing).",
    Gauge,
    &["coordinator"],
);
pub const COORDINATOR_LAST_EVENT: Family = family(
    "mdp_coordinator_last_event_timestamp_seconds",
    "Unix time of the last event applied per coordinator.",
    Gauge,
    &["coordinator"],
);

// ---- Rate tokens (section `rates`).
pub const TOKENS_GRANTED: Family = family(
    "mdp_rate_tokens_granted_total",
    "Rate tokens granted per provider.",
    Counter,
    &["provider"],
);
pub const REQUESTS_THROTTLED: Family = family(
    "mdp_rate_requests_throttled_total",
    "Acquire requests refused per provider.",
    Counter,
    &["provider"],
);
// ---- This pod's share of the budget (section `pods`).
pub const REPLICAS: Family = family(
    "mdp_replicas",
    "Replicas sharing each provider's budget, as this replica knows it.",
    Gauge,
    &[],
);
pub const BUDGET_MODE: Family = family(
    "mdp_budget_mode",
    "Where this pod takes tokens from: 1 for the mode in force (split: its local share; shared: one bucket in Redis; fallback: the local share because Redis does not answer).",
    Gauge,
    &["mode"],
);

// ---- HTTP (section `http`).
pub const UNAUTHORIZED: Family = family(
    "mdp_http_unauthorized_total",
    "Requests refused for a missing or wrong bearer token, by route.",
    Counter,
    &["route"],
);
pub const HTTP_REQUESTS: Family = family(
    "mdp_http_requests_total",
    "HTTP requests answered, by route and status code.",
    Counter,
    &["route", "status"],
);
pub const HTTP_DURATION: Family = family(
    "mdp_http_request_duration_seconds",
    "Time from a request to its response head, by route.",
    Histogram,
    &["route"],
);

// ---- Provider pacing (section `pacing`; only with paced providers).
pub const PACING_GRANTS: Family = family(
    "mdp_pacing_grants_total",
    "Acquire requests granted by a paced provider, by request class (none: no class; other: a class no rule names).",
    Counter,
    &["provider", "class"],
);
pub const PACING_REFUSALS: Family = family(
    "mdp_pacing_refusals_total",
    "Acquire requests a paced provider refused, by request class and the rule that held them last (paused: backpressure HARD; pushback: the provider's own pushback).",
    Counter,
    &["provider", "class", "rule"],
);
pub const PACING_PUSHBACKS: Family = family(
    "mdp_pacing_pushbacks_total",
    "Pushback reports from workers (pacing_violation: IBKR error 162 and the like; rate_limited: an HTTP 429), by class and kind.",
    Counter,
    &["provider", "class", "kind"],
);
pub const PACING_LEASES: Family = family(
    "mdp_pacing_leases_held",
    "Leases held on the concurrency caps of a paced provider (requests in flight).",
    Gauge,
    &["provider"],
);
pub const PACING_FACTOR: Family = family(
    "mdp_pacing_pushback_factor",
    "Factor the provider's own pushback applies to its rate rules (1: none in force), provider-wide (class *) and per class.",
    Gauge,
    &["provider", "class"],
);

/// The families of each section of the exposition, in the order it writes
/// them. A new group of families (pacing, say) is a new list here and a new
/// section in `telemetry` writing exactly it.
pub const CONTROL: &[Family] = &[
    SCALE_FACTOR,
    BACKPRESSURE_STATE,
    QUEUE_DEPTH,
    EVENTS_PROCESSED,
    EFFECTIVE_RATE,
    EVENTS_REJECTED,
    EVENT_TO_SCALE,
    TRANSITIONS,
    FLAPS_SUPPRESSED,
    COORDINATORS,
    POLLS,
    STORE_UP,
    COORDINATOR_DEPTH,
    COORDINATOR_CAPACITY,
    COORDINATOR_LEVEL,
    COORDINATOR_STALE,
    COORDINATOR_LAST_EVENT,
    BUILD_INFO,
];
pub const RATES: &[Family] = &[TOKENS_GRANTED, REQUESTS_THROTTLED];
pub const PODS: &[Family] = &[REPLICAS, BUDGET_MODE];
pub const HTTP: &[Family] = &[UNAUTHORIZED, HTTP_REQUESTS, HTTP_DURATION];
pub const PACING: &[Family] = &[
    PACING_GRANTS,
    PACING_REFUSALS,
    PACING_PUSHBACKS,
    PACING_LEASES,
    PACING_FACTOR,
];

/// Every family mdp defines, section by section.
pub fn all() -> impl Iterator<Item = &'static Family> {
    [CONTROL, RATES, PODS, PACING, HTTP].into_iter().flatten()
}

/// The family named `name`, if mdp defines one.
pub fn find(name: &str) -> Option<&'static Family> {
    all().find(|f| f.name == name)
}
