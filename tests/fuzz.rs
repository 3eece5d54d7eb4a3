//! Property-based fuzzing of the two parsers that read untrusted input: the
//! feedback event parser and the Prometheus text parser of pull mode. Neither
//! may panic, and whatever they accept must satisfy the documented rules.
//! `PROPTEST_CASES` sets the number of cases (CI runs a bounded number).

use mdp::feedback::parse_event;
use mdp::feedback::pull::parse_depths;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,80}".prop_map(Value::String),
        prop_oneof![Just("ok"), Just("soft"), Just("hard"), Just("SOFT")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Events that are close to valid: each field present or not, right or wrong.
fn near_event() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![
            json_value(),
            "[a-z_]{1,70}".prop_map(|s| json!(s))
        ]),
        prop::option::of(prop_oneof![
            json_value(),
            (0u64..20_000).prop_map(|n| json!(n))
        ]),
        prop::option::of(prop_oneof![
            json_value(),
            (0u64..20_000).prop_map(|n| json!(n))
        ]),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(id, size, capacity, level, ts)| {
            let mut event = serde_json::Map::new();
            for (key, value) in [
                ("coordinator_id", id),
                ("queue_size", size),
                ("capacity", capacity),
                ("level", level),
                ("ts", ts),
            ] {
                if let Some(value) = value {
                    event.insert(key.to_owned(), value);
                }
            }
            Value::Object(event)
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&bytes, 1.0, std::time::Duration::MAX);
    }

    #[test]
    fn accepted_events_obey_the_rules(event in near_event()) {
        if let Ok(obs) = parse_event(event.to_string().as_bytes(), 1.0, std::time::Duration::MAX) {
            prop_assert!(!obs.coordinator_id.is_empty() && obs.coordinator_id.len() <= 64);
            prop_assert!(obs.coordinator_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)));
            prop_assert!(obs.capacity > 0);
            prop_assert!(obs.ts.is_finite() && obs.ts >= 0.0);
        }
    }

    #[test]
    fn arbitrary_expositions_never_panic(text in ".{0,2000}") {
        let _ = parse_depths(&text, "mds_coord_queue_depth", "coord_id");
    }

    #[test]
    fn mangled_expositions_yield_only_valid_depths(
        lines in prop::collection::vec(
            prop_oneof![
                (".{0,20}|[a-z_]{60,70}", "-?[0-9.eE+]{0,12}|NaN|\\+Inf|-Inf").prop_map(|(id, v)| format!("mds_coord_queue_depth{{coord_id=\"{id}\"}} {v}")),
                ".{0,60}",
                Just("# TYPE mds_coord_queue_depth gauge".to_owned()),
            ],
            0..30,
        )
    ) {
        if let Ok(depths) = parse_depths(&lines.join("\n"), "mds_coord_queue_depth", "coord_id") {
            prop_assert!(!depths.is_empty());
            for (id, _) in depths {
                prop_assert!(!id.is_empty() && id.len() <= 64);
            }
        }
    }
}
