//! Plain types every layer's settings use: the duration parser of the `--*` options
//! and the one error type of a refused option.

use std::fmt;
use std::time::Duration;

/// Parses a humantime duration such as `15s`, `2m` or `250ms`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (expected e.g. 15s, 2m, 250ms)"))
}

/// One refused option: its name (without the dashes) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub option: &'static str,
    pub message: String,
}

impl OptionError {
    pub fn new(option: &'static str, message: impl ToString) -> Self {
        OptionError {
            option,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid --{}: {}", self.option, self.message)
    }
}

impl std::error::Error for OptionError {}

/// Every refused option of one command line, in the order they were checked;
/// shown on one line, `; `-separated. Never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionErrors(Vec<OptionError>);

impl OptionErrors {
    /// Records `error`.
    pub fn push(&mut self, error: OptionError) {
        self.0.push(error);
    }

    /// Records a refusal of `option`.
    pub fn refuse(&mut self, option: &'static str, message: impl ToString) {
        self.push(OptionError::new(option, message));
    }

    /// The value of `result`, or `None` with its error recorded.
    pub fn check<T, E: Into<OptionErrors>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.extend(error.into().0);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The refused options, in order.
    pub fn errors(&self) -> &[OptionError] {
        &self.0
    }

    /// The names of the refused options, in order.
    pub fn options(&self) -> Vec<&'static str> {
        self.0.iter().map(|e| e.option).collect()
    }

    /// `Ok(())` when nothing was refused.
    pub fn into_result(self) -> Result<(), OptionErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<OptionError> for OptionErrors {
    fn from(error: OptionError) -> Self {
        OptionErrors(vec![error])
    }
}

impl fmt::Display for OptionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        if self.0.is_empty() {
            f.write_str("invalid options")?;
        }
        Ok(())
    }
}

impl std::error::Error for OptionErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_explain_failures() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(duration("soon").unwrap_err().contains("expected e.g. 15s"));
    }

    #[test]
    fn every_refused_option_is_said_on_one_line() {
        let mut errors = OptionErrors::default();
        assert_eq!(errors.check(Ok::<u8, OptionError>(1)), Some(1));
        assert!(errors.clone().into_result().is_ok());
        errors.refuse("a", "too big");
        assert_eq!(
            errors.check(Err::<u8, _>(OptionError::new("b", "too small"))),
            None
        );
        assert_eq!(errors.options(), ["a", "b"]);
        assert_eq!(
            errors.to_string(),
            "invalid --a: too big; invalid --b: too small"
        );
        assert!(errors.into_result().is_err());
    }
}
