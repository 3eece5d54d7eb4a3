//! An independent checker of IBKR's published pacing rules.
//!
//! It shares nothing with the pacer: it takes what was sent (when, which
//! request, how long it stayed open) and counts, request by request and by
//! brute force, every rule the request broke when it was sent. The figures are
//! IBKR's, from the TWS API documentation:
//!
//! - "Message rate limitations": at most 50 messages per second from one client;
//! - "Historical data limitations", pacing violations (error 162): more than 60
//!   historical requests within any ten-minute period; six or more requests for
//!   the same contract, exchange and tick type within two seconds; an identical
//!   request within 15 seconds; a `BID_ASK` request counts twice; at most 50
//!   historical requests open at the same time;
//! - "Market data lines": 100 concurrent live subscriptions by default.
//!
//! Windows are half-open: a request at `t` is counted together with the ones
//! sent in `(t - W, t]`, so two requests exactly W apart never share a window.
//! The `BID_ASK` weight applies to both historical counts (the ten-minute
//! window and the same-contract one): the documentation says such a request
//! "is counted twice" without naming a rule, so the checker reads it strictly.

use super::workload::{Class, Request};
use serde::Serialize;
use std::time::Duration;

/// One request as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub at: Duration,
    /// Index into the workload.
    pub request: usize,
    /// How long it was open (answer time, subscription lifetime).
    pub open: Duration,
}

/// The published rules, one per field of [`Violations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// More than 50 messages within one second.
    Messages,
    /// More than 60 historical requests (BID_ASK twice) within ten minutes.
    HistoricalWindow,
    /// Six or more historical requests for one contract, exchange and tick type within 2 s.
    SameContract,
    /// An identical historical request within 15 s.
    Identical,
    /// More than 50 historical requests open at once.
    HistoricalOpen,
    /// More than 100 market-data lines open at once.
    MarketDataLines,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::Messages,
        Rule::HistoricalWindow,
        Rule::SameContract,
        Rule::Identical,
        Rule::HistoricalOpen,
        Rule::MarketDataLines,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Rule::Messages => "more than 50 messages in 1 s",
            Rule::HistoricalWindow => "more than 60 historical in 10 min",
            Rule::SameContract => "6+ same contract/exchange/tick in 2 s",
            Rule::Identical => "identical request within 15 s",
            Rule::HistoricalOpen => "more than 50 historical open",
            Rule::MarketDataLines => "more than 100 market-data lines",
        }
    }
}

pub const MESSAGES_PER_SECOND: u32 = 50;
pub const HISTORICAL_PER_WINDOW: u32 = 60;
pub const HISTORICAL_WINDOW: Duration = Duration::from_secs(600);
/// Six or more within the window is a violation: five is the most allowed.
pub const SAME_CONTRACT_MAX: u32 = 5;
pub const SAME_CONTRACT_WINDOW: Duration = Duration::from_secs(2);
pub const IDENTICAL_GAP: Duration = Duration::from_secs(15);
pub const HISTORICAL_OPEN_MAX: u32 = 50;
pub const MARKET_DATA_LINES: u32 = 100;
const SECOND: Duration = Duration::from_secs(1);

/// How many sent requests broke each rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    pub messages: u32,
    pub historical_window: u32,
    pub same_contract: u32,
    pub identical: u32,
    pub historical_open: u32,
    pub market_data_lines: u32,
}

impl Violations {
    pub fn total(&self) -> u32 {
        Rule::ALL.iter().map(|&rule| self.get(rule)).sum()
    }

    pub fn get(&self, rule: Rule) -> u32 {
        match rule {
            Rule::Messages => self.messages,
            Rule::HistoricalWindow => self.historical_window,
            Rule::SameContract => self.same_contract,
            Rule::Identical => self.identical,
            Rule::HistoricalOpen => self.historical_open,
            Rule::MarketDataLines => self.market_data_lines,
        }
    }

    fn add(&mut self, rule: Rule) {
        let slot = match rule {
            Rule::Messages => &mut self.messages,
            Rule::HistoricalWindow => &mut self.historical_window,
            Rule::SameContract => &mut self.same_contract,
            Rule::Identical => &mut self.identical,
            Rule::HistoricalOpen => &mut self.historical_open,
            Rule::MarketDataLines => &mut self.market_data_lines,
        };
        *slot += 1;
    }
}

/// What a historical request counts for: a `BID_ASK` one twice.
fn weight(request: &Request) -> u32 {
    if request.class == Class::Historical && request.tick_type == "BID_ASK" {
        2
    } else {
        1
    }
}

/// Counts, for every sent request, each rule it broke when it was sent.
/// `trace` may be in any order; requests sent at the same instant count in
/// the order they appear.
pub fn check(requests: &[Request], trace: &[Sent]) -> Violations {
    let mut sorted: Vec<Sent> = trace.to_vec();
    sorted.sort_by_key(|sent| sent.at);
    let mut violations = Violations::default();
    for j in 0..sorted.len() {
        for rule in broken(requests, &sorted, j) {
            violations.add(rule);
        }
    }
    violations
}

/// The rules that `sorted[j]` broke, looking at everything sent before it
/// (`sorted` is in time order).
pub fn broken(requests: &[Request], sorted: &[Sent], j: usize) -> Vec<Rule> {
    let me = &sorted[j];
    let request = &requests[me.request];
    let earlier = || sorted[..j].iter().rev();
    let within = |sent: &Sent, window: Duration| sent.at + window > me.at;
    let mut rules = Vec::new();

    // Every request is one message.
    let messages = 1 + earlier().take_while(|sent| within(sent, SECOND)).count() as u32;
    if messages > MESSAGES_PER_SECOND {
        rules.push(Rule::Messages);
    }
    match request.class {
        Class::Historical => {
            let historical = |sent: &&Sent| requests[sent.request].class == Class::Historical;
            let in_window: u32 = weight(request)
                + earlier()
                    .take_while(|sent| within(sent, HISTORICAL_WINDOW))
                    .filter(historical)
                    .map(|sent| weight(&requests[sent.request]))
                    .sum::<u32>();
            if in_window > HISTORICAL_PER_WINDOW {
                rules.push(Rule::HistoricalWindow);
            }
            let key = (&request.contract, &request.exchange, &request.tick_type);
            let same: u32 = weight(request)
                + earlier()
                    .take_while(|sent| within(sent, SAME_CONTRACT_WINDOW))
                    .filter(historical)
                    .filter(|sent| {
                        let other = &requests[sent.request];
                        (&other.contract, &other.exchange, &other.tick_type) == key
                    })
                    .map(|sent| weight(&requests[sent.request]))
                    .sum::<u32>();
            if same > SAME_CONTRACT_MAX {
                rules.push(Rule::SameContract);
            }
            let identical = earlier()
                .take_while(|sent| within(sent, IDENTICAL_GAP))
                .filter(historical)
                .any(|sent| {
                    let other = &requests[sent.request];
                    (
                        &other.contract,
                        &other.exchange,
                        &other.tick_type,
                        &other.query,
                    ) == (key.0, key.1, key.2, &request.query)
                });
            if identical {
                rules.push(Rule::Identical);
            }
            if open_with(requests, sorted, j, Class::Historical) > HISTORICAL_OPEN_MAX {
                rules.push(Rule::HistoricalOpen);
            }
        }
        Class::MarketData => {
            if open_with(requests, sorted, j, Class::MarketData) > MARKET_DATA_LINES {
                rules.push(Rule::MarketDataLines);
            }
        }
        Class::Orders => {}
    }
    rules
}

/// Requests of `class` open at the instant `sorted[j]` is sent, itself included.
fn open_with(requests: &[Request], sorted: &[Sent], j: usize, class: Class) -> u32 {
    let now = sorted[j].at;
    1 + sorted[..j]
        .iter()
        .filter(|sent| requests[sent.request].class == class && sent.at + sent.open > now)
        .count() as u32
}

/// When each rule `sorted[j]` broke will next change for a request sent at
/// `sorted[j].at`: the rule cannot let it through before then. None for a
/// rule that no wait can satisfy (a request heavier than the limit).
pub fn next_change(
    requests: &[Request],
    sorted: &[Sent],
    j: usize,
    rule: Rule,
) -> Option<Duration> {
    let me = &sorted[j];
    let request = &requests[me.request];
    let earlier = sorted[..j].iter();
    let of = |sent: &&Sent, class: Class| requests[sent.request].class == class;
    let key = |r: &Request| (r.contract.clone(), r.exchange.clone(), r.tick_type.clone());
    match rule {
        Rule::Messages => earlier
            .filter(|sent| sent.at + SECOND > me.at)
            .map(|sent| sent.at + SECOND)
            .min(),
        Rule::HistoricalWindow if weight(request) <= HISTORICAL_PER_WINDOW => earlier
            .filter(|sent| of(sent, Class::Historical) && sent.at + HISTORICAL_WINDOW > me.at)
            .map(|sent| sent.at + HISTORICAL_WINDOW)
            .min(),
        Rule::SameContract if weight(request) <= SAME_CONTRACT_MAX => earlier
            .filter(|sent| {
                of(sent, Class::Historical)
                    && sent.at + SAME_CONTRACT_WINDOW > me.at
                    && key(&requests[sent.request]) == key(request)
            })
            .map(|sent| sent.at + SAME_CONTRACT_WINDOW)
            .min(),
        Rule::Identical => earlier
            .filter(|sent| {
                let other = &requests[sent.request];
                of(sent, Class::Historical)
                    && key(other) == key(request)
                    && other.query == request.query
            })
            .map(|sent| sent.at + IDENTICAL_GAP)
            .max(),
        Rule::HistoricalOpen => earlier
            .filter(|sent| of(sent, Class::Historical) && sent.at + sent.open > me.at)
            .map(|sent| sent.at + sent.open)
            .min(),
        Rule::MarketDataLines => earlier
            .filter(|sent| of(sent, Class::MarketData) && sent.at + sent.open > me.at)
            .map(|sent| sent.at + sent.open)
            .min(),
        Rule::HistoricalWindow | Rule::SameContract => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn historical(id: usize, contract: &str, tick: &str, query: &str) -> Request {
        Request {
            id,
            class: Class::Historical,
            contract: contract.into(),
            exchange: "SMART".into(),
            tick_type: tick.into(),
            query: query.into(),
            ready: Duration::ZERO,
            open: ms(500),
        }
    }

    fn other(id: usize, class: Class) -> Request {
        Request {
            id,
            class,
            contract: format!("S{id}"),
            exchange: "SMART".into(),
            tick_type: String::new(),
            query: String::new(),
            ready: Duration::ZERO,
            open: Duration::ZERO,
        }
    }

    fn sent(request: usize, at_ms: u64, open_ms: u64) -> Sent {
        Sent {
            at: ms(at_ms),
            request,
            open: ms(open_ms),
        }
    }

    /// Only `rule` is broken, `times` times.
    fn only(violations: Violations, rule: Rule, times: u32) {
        assert_eq!(violations.get(rule), times, "{rule:?}: {violations:?}");
        assert_eq!(violations.total(), times, "{violations:?}");
    }

    #[test]
    fn the_51st_message_within_a_second_is_a_violation() {
        let requests: Vec<_> = (0..51).map(|i| other(i, Class::Orders)).collect();
        // 50 within [0, 980] ms are fine; the 51st at 990 ms breaks the rule.
        let mut trace: Vec<_> = (0..50).map(|i| sent(i, i as u64 * 20, 0)).collect();
        assert_eq!(check(&requests, &trace).total(), 0);
        trace.push(sent(50, 990, 0));
        only(check(&requests, &trace), Rule::Messages, 1);
        // A second after the first, the window has moved on.
        trace.last_mut().expect("one").at = ms(1000);
        assert_eq!(check(&requests, &trace).total(), 0);
    }

    #[test]
    fn the_61st_historical_within_ten_minutes_and_bid_ask_twice() {
        let requests: Vec<_> = (0..61)
            .map(|i| historical(i, &format!("C{i}"), "TRADES", "1 D"))
            .collect();
        // One every 9 s: 61 inside 540 s.
        let mut trace: Vec<_> = (0..60).map(|i| sent(i, i as u64 * 9_000, 500)).collect();
        assert_eq!(check(&requests, &trace).total(), 0);
        trace.push(sent(60, 540_000, 500));
        only(check(&requests, &trace), Rule::HistoricalWindow, 1);
        // Exactly ten minutes after the first, it is a new window.
        trace.last_mut().expect("one").at = ms(600_000);
        assert_eq!(check(&requests, &trace).total(), 0);
        // 30 BID_ASK requests fill the window: a 31st is over.
        let bid_ask: Vec<_> = (0..31)
            .map(|i| historical(i, &format!("C{i}"), "BID_ASK", "1 D"))
            .collect();
        let trace: Vec<_> = (0..31).map(|i| sent(i, i as u64 * 9_000, 500)).collect();
        only(check(&bid_ask, &trace), Rule::HistoricalWindow, 1);
        assert_eq!(check(&bid_ask, &trace[..30]).total(), 0);
    }

    #[test]
    fn six_same_contract_requests_within_two_seconds() {
        let requests: Vec<_> = (0..6)
            .map(|i| historical(i, "AAPL", "TRADES", &format!("day-{i}")))
            .collect();
        let mut trace: Vec<_> = (0..6).map(|i| sent(i, i as u64 * 300, 100)).collect();
        only(check(&requests, &trace), Rule::SameContract, 1);
        assert_eq!(check(&requests, &trace[..5]).total(), 0);
        // Spread over more than 2 s from the first, no violation.
        trace[5].at = ms(2000);
        assert_eq!(check(&requests, &trace).total(), 0);
        // Another tick type or exchange is another key.
        let mut mixed = requests.clone();
        mixed[5].tick_type = "MIDPOINT".into();
        trace[5].at = ms(1500);
        assert_eq!(check(&mixed, &trace).total(), 0);
        mixed[5].tick_type = "TRADES".into();
        mixed[5].exchange = "ISLAND".into();
        assert_eq!(check(&mixed, &trace).total(), 0);
        // Three BID_ASK requests for one contract count as six.
        let bid_ask: Vec<_> = (0..3)
            .map(|i| historical(i, "AAPL", "BID_ASK", &format!("day-{i}")))
            .collect();
        let trace: Vec<_> = (0..3).map(|i| sent(i, i as u64 * 100, 100)).collect();
        only(check(&bid_ask, &trace), Rule::SameContract, 1);
    }

    #[test]
    fn an_identical_request_within_fifteen_seconds() {
        let requests = vec![
            historical(0, "AAPL", "TRADES", "1 D/1 min/day-0"),
            historical(1, "AAPL", "TRADES", "1 D/1 min/day-0"),
            historical(2, "AAPL", "TRADES", "1 D/1 min/day-1"),
        ];
        let trace = vec![sent(0, 0, 100), sent(1, 14_999, 100), sent(2, 5_000, 100)];
        only(check(&requests, &trace), Rule::Identical, 1);
        let trace = vec![sent(0, 0, 100), sent(1, 15_000, 100), sent(2, 5_000, 100)];
        assert_eq!(check(&requests, &trace).total(), 0);
    }

    #[test]
    fn the_51st_open_historical_request_and_the_101st_line() {
        let requests: Vec<_> = (0..51)
            .map(|i| historical(i, &format!("C{i}"), "TRADES", "1 D"))
            .collect();
        // 50 sent 1 s apart, each open for 60 s: all open at 49 s.
        let mut trace: Vec<_> = (0..50).map(|i| sent(i, i as u64 * 1000, 60_000)).collect();
        trace.push(sent(50, 50_000, 1000));
        only(check(&requests, &trace), Rule::HistoricalOpen, 1);
        // Once the first has answered (at 60 s), the 51st may go.
        trace[50].at = ms(60_000);
        assert_eq!(check(&requests, &trace).total(), 0);

        let lines: Vec<_> = (0..101).map(|i| other(i, Class::MarketData)).collect();
        let mut trace: Vec<_> = (0..101)
            .map(|i| sent(i, i as u64 * 30, 3_600_000))
            .collect();
        only(check(&lines, &trace), Rule::MarketDataLines, 1);
        trace[0].open = ms(100);
        assert_eq!(check(&lines, &trace).total(), 0);
    }

    #[test]
    fn a_clean_mixed_trace_passes_and_order_of_the_trace_does_not_matter() {
        let mut requests = Vec::new();
        let mut trace = Vec::new();
        for i in 0..40 {
            requests.push(historical(
                i,
                &format!("C{}", i % 8),
                "TRADES",
                &format!("q{i}"),
            ));
            trace.push(sent(i, i as u64 * 10_000, 5_000));
        }
        for i in 40..120 {
            requests.push(other(i, Class::MarketData));
            trace.push(sent(i, (i as u64 - 40) * 100, 1_000_000));
        }
        for i in 120..160 {
            requests.push(other(i, Class::Orders));
            trace.push(sent(i, 20_000 + (i as u64 - 120) * 25, 0));
        }
        assert_eq!(check(&requests, &trace), Violations::default());
        trace.reverse();
        assert_eq!(check(&requests, &trace), Violations::default());
    }

    #[test]
    fn next_change_is_when_the_blocking_entry_leaves() {
        let requests: Vec<_> = (0..7)
            .map(|i| historical(i, "AAPL", "TRADES", &format!("d{i}")))
            .collect();
        let trace: Vec<_> = (0..6).map(|i| sent(i, 100 + i as u64 * 10, 10)).collect();
        assert_eq!(broken(&requests, &trace, 5), vec![Rule::SameContract]);
        assert_eq!(
            next_change(&requests, &trace, 5, Rule::SameContract),
            Some(ms(2100))
        );
    }
}
