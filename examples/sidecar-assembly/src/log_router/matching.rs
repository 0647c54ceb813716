//! Tag patterns, as in Fluent Bit's `Match`: `*` stands for any run of
//! characters, everything else for itself.

/// A set of patterns; a tag is routed if any matches.
#[derive(Debug, Clone)]
pub struct TagMatch {
    patterns: Vec<String>,
}

impl TagMatch {
    /// No pattern means every tag.
    pub fn new(patterns: Vec<String>) -> Self {
        let patterns = if patterns.is_empty() {
            vec!["*".to_owned()]
        } else {
            patterns
        };
        TagMatch { patterns }
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob(p.as_bytes(), tag.as_bytes()))
    }
}

/// Wildcard matching in linear space: on a mismatch, the last `*` absorbs
/// one more character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| TagMatch::new(vec![p.to_owned()]).matches(t);
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("app-firelens-*", "app-firelens-1234"));
        assert!(!m("app-firelens-*", "ambassador-firelens-1234"));
        assert!(m("*-firelens-*", "a-firelens-"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(TagMatch::new(vec![]).matches("x"));
        let two = TagMatch::new(vec!["app-*".into(), "config-*".into()]);
        assert!(two.matches("config-firelens-1") && !two.matches("log-router-firelens-1"));
    }
}
