//! Which KEDA and Kubernetes release the model follows: one definition of what each
//! version does, shared by `mdp simulate` (the rules it runs) and `mdp export` (the
//! ScaledObject fields it writes).
//!
//! Each rule below names the upstream function whose behaviour changed, and the release
//! that changed it, as read in kedacore/keda at its release tags and in Kubernetes'
//! `pkg/controller/podautoscaler`.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A KEDA release line, `2.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KedaVersion {
    minor: u8,
}

/// A Kubernetes release line, `1.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubernetesVersion {
    minor: u8,
}

/// How KEDA turns a float into the milli-quantity the HPA computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantityRounding {
    /// `GenerateMetricInMili` / `GetMetricTargetMili` before 2.20: `int64(value * 1000)`.
    Truncate,
    /// 2.20 (`quantityFromFloat64`): `resource.MustParse(fmt.Sprintf("%.3f", value))`,
    /// the nearest milli; NaN and infinities become 0.
    Nearest,
}

/// How `doFallback` builds the fallback metric from the trigger's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackTarget {
    /// 2.12-2.13: `int64(target * 1000) * replicas` milli: the target's milli value.
    MilliTarget,
    /// 2.14-2.17: `int64(target) * 1000 * replicas`: the target truncated to an
    /// integer first, so a target of 0.5 serves 0 and asks for no pods.
    WholeTarget,
    /// 2.18 and later: `int64(target * 1000 * replicas)`: fractional targets work.
    MilliProduct,
}

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{0:?} is not a version like 2.17")]
    Malformed(String),
    #[error("KEDA {0} is not modelled: supported are 2.{min} to 2.{max}", min = KedaVersion::OLDEST.minor, max = KedaVersion::NEWEST.minor)]
    UnsupportedKeda(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("Kubernetes {0} is not modelled: supported are 1.{min} to 1.{max}", min = KubernetesVersion::OLDEST.minor, max = KubernetesVersion::NEWEST.minor)]
    UnsupportedKubernetes(String),
}

/// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`, with an optional leading `v`.
fn parse_release(text: &str) -> Option<(u8, u8)> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    let mut parts = bare.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    match parts.next() {
        None => {}
        Some(patch) if patch.parse::<u16>().is_ok() => {}
        Some(_) => return None,
    }
    parts.next().is_none().then_some((major, minor))
}

impl KedaVersion {
    /// The oldest release whose ScaledObject CRD mdp validates against.
    pub const OLDEST: KedaVersion = KedaVersion { minor: 12 };
    /// The newest release modelled, and the default.
    pub const NEWEST: KedaVersion = KedaVersion { minor: 20 };

    /// Every modelled release, oldest first.
    pub fn all() -> impl Iterator<Item = KedaVersion> {
        (Self::OLDEST.minor..=Self::NEWEST.minor).map(|minor| KedaVersion { minor })
    }

    pub fn minor(self) -> u8 {
        self.minor
    }

    /// `spec.fallback.behavior` exists (KEDA 2.17, "Add Fallback option `behavior`",
    /// kedacore/keda#6450). Before, the fallback is always the static replica count.
    pub fn has_fallback_behavior(self) -> bool {
        self.minor >= 17
    }

    /// The ScaledObject CRD carries the HPA's per-direction `tolerance` in
    /// `advanced.horizontalPodAutoscalerConfig.behavior` (KEDA 2.18, built on the
    /// Kubernetes 1.33 API).
    pub fn has_hpa_tolerance(self) -> bool {
        self.minor >= 18
    }

    /// The operator's polling loop runs the triggers through `GetMetricsWithFallback`
    /// too (`getScalerState` -> `processMetricsWithFallback`, KEDA 2.19, "Apply fallback
    /// in polling loop", kedacore/keda#7239): it counts failures on the same
    /// `status.health` counter as the HPA's metric requests, resets it on success, and
    /// an engaged fallback counts as an active trigger.
    pub fn operator_counts_failures(self) -> bool {
        self.minor >= 19
    }

    /// `doFallback`'s arithmetic on the target.
    pub fn fallback_target(self) -> FallbackTarget {
        match self.minor {
            ..=13 => FallbackTarget::MilliTarget,
            14..=17 => FallbackTarget::WholeTarget,
            _ => FallbackTarget::MilliProduct,
        }
    }

    /// `GenerateMetricInMili` and `GetMetricTargetMili`.
    pub fn quantity_rounding(self) -> QuantityRounding {
        if self.minor >= 20 {
            QuantityRounding::Nearest
        } else {
            QuantityRounding::Truncate
        }
    }

    /// `value` as the milli-quantity KEDA hands the HPA, back as a float.
    pub fn quantity(self, value: f64) -> f64 {
        match self.quantity_rounding() {
            QuantityRounding::Truncate => ((value * 1000.0) as i64) as f64 / 1000.0,
            QuantityRounding::Nearest if !value.is_finite() => 0.0,
            QuantityRounding::Nearest => format!("{value:.3}").parse().unwrap_or(0.0),
        }
    }

    /// The metric value the fallback serves for a trigger of `target` per replica
    /// standing for `replicas` pods (`doFallback`).
    pub fn fallback_metric_value(self, target: f64, replicas: u32) -> f64 {
        let replicas_f = f64::from(replicas);
        let milli = match self.fallback_target() {
            FallbackTarget::MilliTarget => ((target * 1000.0) as i64) as f64 * replicas_f,
            FallbackTarget::WholeTarget => (target as i64) as f64 * 1000.0 * replicas_f,
            FallbackTarget::MilliProduct => ((target * 1000.0 * replicas_f) as i64) as f64,
        };
        milli / 1000.0
    }

    /// What differs from the newest release, in words, for the README and the
    /// comment of the generated ScaledObject.
    pub fn differences(self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if !self.has_fallback_behavior() {
            notes.push(
                "no fallback.behavior (added in KEDA 2.17): the fallback is a fixed fallback.replicas pods, so during a metrics outage a larger Deployment is scaled in to it",
            );
        }
        if self.fallback_target() == FallbackTarget::WholeTarget {
            notes.push(
                "the fallback truncates each trigger's threshold to an integer (KEDA 2.14-2.17): mdp's thresholds are whole numbers, so this does not bite",
            );
        }
        if !self.operator_counts_failures() {
            notes.push(
                "only the HPA's metric requests count failures (the polling loop counts too since KEDA 2.19): the fallback engages at the (failureThreshold + 1)th failing HPA sync",
            );
        }
        if self.quantity_rounding() == QuantityRounding::Truncate {
            notes.push("metric values are truncated to milli-units (rounded since KEDA 2.20)");
        }
        notes
    }
}

impl Default for KedaVersion {
    fn default() -> Self {
        Self::NEWEST
    }
}

impl fmt::Display for KedaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2.{}", self.minor)
    }
}

impl FromStr for KedaVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, VersionError> {
        let (major, minor) =
            parse_release(text).ok_or_else(|| VersionError::Malformed(text.to_owned()))?;
        let version = KedaVersion { minor };
        if major != 2 || version < Self::OLDEST || version > Self::NEWEST {
            return Err(VersionError::UnsupportedKeda(text.trim().to_owned()));
        }
        Ok(version)
    }
}

impl Serialize for KedaVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl KubernetesVersion {
    /// The oldest release KEDA 2.12 supports.
    pub const OLDEST: KubernetesVersion = KubernetesVersion { minor: 26 };
    /// The newest release modelled.
    pub const NEWEST: KubernetesVersion = KubernetesVersion { minor: 35 };
    /// The default: the first release with today's tolerance rule.
    pub const DEFAULT: KubernetesVersion = KubernetesVersion { minor: 33 };

    pub fn minor(self) -> u8 {
        self.minor
    }

    /// The tolerance is an inclusive band, `1 - down <= ratio <= 1 + up`
    /// (`Tolerances.isWithin` in `replica_calculator.go`, Kubernetes 1.33, KEP-4951).
    /// Before, `math.Abs(1.0 - usageRatio) <= tolerance` in floating point, where a
    /// ratio of exactly 1.1 is outside (|1 - 1.1| is 0.10000000000000009).
    pub fn inclusive_tolerance(self) -> bool {
        self.minor >= 33
    }

    /// `behavior.scaleUp.tolerance` / `scaleDown.tolerance` are honoured (KEP-4951:
    /// alpha behind the `HPAConfigurableTolerance` gate in 1.33, on by default in 1.35).
    /// The model applies them from 1.33, as if the gate were on.
    pub fn configurable_tolerance(self) -> bool {
        self.minor >= 33
    }
}

impl Default for KubernetesVersion {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

impl FromStr for KubernetesVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, VersionError> {
        let (major, minor) =
            parse_release(text).ok_or_else(|| VersionError::Malformed(text.to_owned()))?;
        let version = KubernetesVersion { minor };
        if major != 1 || version < Self::OLDEST || version > Self::NEWEST {
            return Err(VersionError::UnsupportedKubernetes(text.trim().to_owned()));
        }
        Ok(version)
    }
}

impl Serialize for KubernetesVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The releases a model run or an export targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Versions {
    pub keda: KedaVersion,
    pub kubernetes: KubernetesVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_refuse() {
        assert_eq!("2.17".parse::<KedaVersion>().map(|v| v.minor()), Ok(17));
        assert_eq!("v2.20.1".parse::<KedaVersion>().map(|v| v.minor()), Ok(20));
        assert!(matches!(
            "2.11".parse::<KedaVersion>(),
            Err(VersionError::UnsupportedKeda(_))
        ));
        assert!(matches!(
            "2.21".parse::<KedaVersion>(),
            Err(VersionError::UnsupportedKeda(_))
        ));
        assert!(matches!(
            "two".parse::<KedaVersion>(),
            Err(VersionError::Malformed(_))
        ));
        assert!("3.0".parse::<KedaVersion>().is_err());
        assert_eq!(
            "1.33".parse::<KubernetesVersion>(),
            Ok(KubernetesVersion::DEFAULT)
        );
        assert!("1.25".parse::<KubernetesVersion>().is_err());
        assert_eq!(KedaVersion::all().count(), 9);
        assert_eq!(KedaVersion::default().to_string(), "2.20");
    }

    // KEDA `pkg/scalers/scaler.go` `GenerateMetricInMili`: int64(value * 1000) before
    // 2.20, fmt.Sprintf("%.3f") since.
    #[test]
    fn quantities_truncate_before_2_20_and_round_since() {
        let old = KedaVersion { minor: 19 };
        let new = KedaVersion::NEWEST;
        assert_eq!(old.quantity(0.0019), 0.001);
        assert_eq!(new.quantity(0.0019), 0.002);
        assert_eq!(old.quantity(1234.5678), 1234.567);
        assert_eq!(new.quantity(1234.5678), 1234.568);
        assert_eq!(new.quantity(f64::NAN), 0.0);
    }

    // KEDA `pkg/fallback/fallback.go` `doFallback` at v2.12.0, v2.14.0 and v2.18.0.
    #[test]
    fn fallback_target_arithmetic_per_release() {
        let at = |minor| KedaVersion { minor };
        assert_eq!(at(12).fallback_metric_value(0.5, 3), 1.5);
        assert_eq!(at(17).fallback_metric_value(0.5, 3), 0.0);
        assert_eq!(at(17).fallback_metric_value(1000.0, 6), 6000.0);
        assert_eq!(at(18).fallback_metric_value(0.5, 3), 1.5);
        assert_eq!(at(20).fallback_metric_value(1.0, 10), 10.0);
    }
}
