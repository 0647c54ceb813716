//! CloudWatch Logs filter patterns for unstructured events: terms separated
//! by spaces must all appear (case-sensitive), `"quoted phrases"` match as a
//! whole, `?term` terms match when any of them does, and `-term` excludes
//! events containing it. An empty pattern matches everything. JSON and
//! space-delimited field patterns (`{ $.x = 1 }`, `[a, b]`) are refused with
//! a clear message rather than matched wrongly.

/// A parsed filter pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pattern {
    required: Vec<String>,
    any_of: Vec<String>,
    excluded: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text.starts_with('{') || text.starts_with('[') {
            return Err(format!(
                "Invalid filter pattern {text:?}: JSON and space-delimited patterns are not \
                 supported; use terms, \"quoted phrases\", ?optional and -excluded terms"
            ));
        }
        let mut pattern = Pattern::default();
        let mut chars = text.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&first) = chars.peek() else { break };
            let mut kind = 0u8; // 0 required, 1 any-of, 2 excluded
            if first == '-' || first == '?' {
                kind = if first == '-' { 2 } else { 1 };
                chars.next();
            }
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                term.push(escaped);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => term.push(c),
                    }
                }
                if !closed {
                    return Err(format!("Invalid filter pattern {text:?}: unclosed quote"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    term.push(c);
                    chars.next();
                }
            }
            if term.is_empty() {
                continue;
            }
            match kind {
                0 => pattern.required.push(term),
                1 => pattern.any_of.push(term),
                _ => pattern.excluded.push(term),
            }
        }
        Ok(pattern)
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
    }

    /// The longest term every match contains, for narrowing a search before
    /// [`Pattern::matches`] decides.
    pub fn narrowing_term(&self) -> Option<&str> {
        self.required
            .iter()
            .max_by_key(|t| t.len())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_phrases_options_and_exclusions() {
        let p = Pattern::parse(r#"ERROR "disk full" -retry"#).unwrap();
        assert!(p.matches("ERROR: disk full on /data"));
        assert!(!p.matches("ERROR: disk nearly full"));
        assert!(!p.matches("ERROR: disk full, retry in 5s"));
        assert!(!p.matches("error: disk full"));
        assert_eq!(p.narrowing_term(), Some("disk full"));

        let any = Pattern::parse("?timeout ?refused").unwrap();
        assert!(any.matches("connect: connection refused"));
        assert!(!any.matches("ok"));

        let all = Pattern::parse("").unwrap();
        assert!(all.matches("anything"));
        assert_eq!(all.narrowing_term(), None);
    }

    #[test]
    fn unsupported_and_broken_patterns_are_refused() {
        assert!(Pattern::parse("{ $.level = \"error\" }").is_err());
        assert!(Pattern::parse("[ip, user]").is_err());
        assert!(Pattern::parse("\"unclosed").is_err());
    }
}
