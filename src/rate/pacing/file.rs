//! Placeholder until the providers file parser lands.
use super::ProviderPacing;

pub fn parse(_text: &str, origin: &str) -> Result<Vec<ProviderPacing>, String> {
    Err(format!("{origin}: providers files are not read yet"))
}
