//! A realistic, seeded IBKR workload: a historical backfill of many contracts
//! (with identical repeats, `BID_ASK` requests and same-contract bursts), a
//! second backfill wave later on, live market-data subscriptions that come and
//! go, and bursts of other messages (orders, account updates).
//!
//! The same seed always gives the same list of requests.

use std::time::Duration;

/// What a request is for; the class a worker names in its acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// `reqHistoricalData`: paced by the historical rules, open until answered.
    Historical,
    /// `reqMktData`: a live subscription, holding one market-data line while open.
    MarketData,
    /// Any other message (orders, account and position requests).
    Orders,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Historical => "historical",
            Class::MarketData => "market_data",
            Class::Orders => "orders",
        }
    }
}

/// One request the workers want to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Index in the workload, also its tie-breaker.
    pub id: usize,
    pub class: Class,
    /// Contract symbol (historical and market data).
    pub contract: String,
    pub exchange: String,
    /// `TRADES`, `MIDPOINT`, `BID_ASK`, ... (historical only).
    pub tick_type: String,
    /// Duration, bar size and end of a historical request (with the three
    /// above, what makes two requests identical).
    pub query: String,
    /// When a worker wants to send it.
    pub ready: Duration,
    /// How long it stays open once sent: the answer time of a historical
    /// request, the lifetime of a subscription, zero for a plain message.
    pub open: Duration,
}

impl Request {
    /// The key of the same-contract rule: contract, exchange and tick type.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.contract, self.exchange, self.tick_type)
    }

    /// What makes two historical requests identical.
    pub fn fingerprint(&self) -> String {
        format!("{}/{}", self.key(), self.query)
    }

    /// Whether this is a `BID_ASK` historical request.
    pub fn is_bid_ask(&self) -> bool {
        self.class == Class::Historical && self.tick_type == "BID_ASK"
    }

    /// The tokens a worker asks for: a `BID_ASK` request counts twice.
    pub fn tokens(&self) -> u32 {
        if self.is_bid_ask() { 2 } else { 1 }
    }
}

/// The knobs of the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSettings {
    pub seed: u64,
    /// Contracts in the first backfill.
    pub contracts: usize,
    /// Historical chunks asked per contract (consecutive: a same-contract burst).
    pub chunks: usize,
    /// Share of historical requests sent a second time (an identical repeat).
    pub repeat_share: f64,
    /// Share of contracts backfilled with `BID_ASK` rather than `TRADES`.
    pub bid_ask_share: f64,
    /// When the second, smaller backfill wave arrives.
    pub second_wave_at: Duration,
    /// Live subscriptions opened at the start and kept for the whole run.
    pub standing_lines: usize,
    /// Subscriptions that come and go during the run.
    pub churn_lines: usize,
    /// How long the live part of the workload lasts.
    pub horizon: Duration,
    /// Bursts of other messages during the horizon.
    pub order_bursts: usize,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        WorkloadSettings {
            seed: 1,
            contracts: 24,
            chunks: 4,
            repeat_share: 0.15,
            bid_ask_share: 0.15,
            second_wave_at: Duration::from_secs(900),
            standing_lines: 70,
            churn_lines: 90,
            horizon: Duration::from_secs(1800),
            order_bursts: 40,
        }
    }
}

/// A deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_5EED)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform whole milliseconds in [low, high].
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next_u64() % (high - low + 1))
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const SYMBOLS: [&str; 32] = [
    "AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "META", "TSLA", "BRK B", "JPM", "V", "UNH", "XOM",
    "JNJ", "WMT", "MA", "PG", "HD", "CVX", "MRK", "ABBV", "KO", "PEP", "AVGO", "COST", "ADBE",
    "CRM", "NFLX", "AMD", "INTC", "ORCL", "CSCO", "QCOM",
];

fn symbol(index: usize) -> String {
    match SYMBOLS.get(index) {
        Some(name) => (*name).to_owned(),
        None => format!("C{index:03}"),
    }
}

/// Builds the workload, sorted by ready time (ties by id).
pub fn generate(settings: &WorkloadSettings) -> Vec<Request> {
    let mut rng = Rng::new(settings.seed);
    let mut requests = Vec::new();
    let push = |requests: &mut Vec<Request>, mut request: Request| {
        request.id = requests.len();
        requests.push(request);
    };
    let historical = |contract: String, tick: &str, query: String, ready, open| Request {
        id: 0,
        class: Class::Historical,
        contract,
        exchange: "SMART".into(),
        tick_type: tick.into(),
        query,
        ready,
        open,
    };
    // The first backfill: every contract's chunks queued one after the other
    // at the start (a same-contract burst each), some sent twice.
    for wave in 0..2 {
        let (contracts, start, offset) = match wave {
            0 => (settings.contracts, Duration::ZERO, 0),
            _ => (settings.contracts / 3, settings.second_wave_at, 100),
        };
        for c in 0..contracts {
            let contract = symbol(offset + c);
            let tick = if rng.unit() < settings.bid_ask_share {
                "BID_ASK"
            } else {
                "TRADES"
            };
            for chunk in 0..settings.chunks {
                let query = format!("1 D/1 min/day-{chunk}");
                let ready = start + rng.millis(0, 200 * c as u64 + 50);
                let open = rng.millis(2_000, 60_000);
                push(
                    &mut requests,
                    historical(contract.clone(), tick, query.clone(), ready, open),
                );
                if rng.unit() < settings.repeat_share {
                    // A second consumer (or a retry after a timeout) asks the same.
                    let again = ready + rng.millis(100, 4_000);
                    let open = rng.millis(2_000, 60_000);
                    push(
                        &mut requests,
                        historical(contract.clone(), tick, query, again, open),
                    );
                }
            }
        }
    }
    let line = |contract: String, ready, open| Request {
        id: 0,
        class: Class::MarketData,
        contract,
        exchange: "SMART".into(),
        tick_type: String::new(),
        query: String::new(),
        ready,
        open,
    };
    let horizon_ms = settings.horizon.as_millis() as u64;
    for s in 0..settings.standing_lines {
        let ready = rng.millis(0, 2_000);
        push(&mut requests, line(symbol(s), ready, settings.horizon));
    }
    for s in 0..settings.churn_lines {
        // Subscriptions opened in clusters (a screen of symbols at once).
        let cluster = rng.millis(0, horizon_ms * 3 / 4);
        let ready = cluster + rng.millis(0, 500);
        let open = rng.millis(60_000, 600_000);
        push(
            &mut requests,
            line(symbol(settings.standing_lines + s), ready, open),
        );
        // Some symbols of a screen come in threes.
        if s % 3 != 0 {
            continue;
        }
        for extra in 1..3 {
            let ready = cluster + rng.millis(0, 300);
            push(&mut requests, line(format!("X{s:03}-{extra}"), ready, open));
        }
    }
    for _ in 0..settings.order_bursts {
        // A burst of orders and account messages within a few hundred ms.
        let at = rng.millis(0, horizon_ms);
        let size = 10 + rng.below(70);
        let spread = rng.millis(50, 900).as_millis() as u64;
        for _ in 0..size {
            push(
                &mut requests,
                Request {
                    id: 0,
                    class: Class::Orders,
                    contract: String::new(),
                    exchange: String::new(),
                    tick_type: String::new(),
                    query: String::new(),
                    ready: at + rng.millis(0, spread),
                    open: Duration::ZERO,
                },
            );
        }
    }
    requests.sort_by_key(|r| (r.ready, r.id));
    for (id, request) in requests.iter_mut().enumerate() {
        request.id = id;
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_workload_and_another_seed_another() {
        let a = generate(&WorkloadSettings::default());
        let b = generate(&WorkloadSettings::default());
        assert_eq!(a, b);
        let c = generate(&WorkloadSettings {
            seed: 2,
            ..WorkloadSettings::default()
        });
        assert_ne!(a, c);
    }

    #[test]
    fn the_workload_has_every_ingredient() {
        let requests = generate(&WorkloadSettings::default());
        let historical: Vec<_> = requests
            .iter()
            .filter(|r| r.class == Class::Historical)
            .collect();
        assert!(historical.len() > 100, "{}", historical.len());
        assert!(historical.iter().any(|r| r.is_bid_ask()));
        let mut fingerprints: Vec<_> = historical.iter().map(|r| r.fingerprint()).collect();
        let all = fingerprints.len();
        fingerprints.sort();
        fingerprints.dedup();
        assert!(fingerprints.len() < all, "no identical repeats");
        // More subscriptions wanted than a client has lines, and message bursts.
        let lines = requests
            .iter()
            .filter(|r| r.class == Class::MarketData)
            .count();
        assert!(lines > 100, "{lines}");
        assert!(requests.iter().any(|r| r.class == Class::Orders));
        assert!(requests.windows(2).all(|w| w[0].ready <= w[1].ready));
        assert!(requests.iter().enumerate().all(|(i, r)| r.id == i));
    }
}
