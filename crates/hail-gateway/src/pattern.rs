//! ALB wildcard patterns: `*` matches any run of characters (including none),
//! `?` exactly one character, everything else itself.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        wildcard_match(&self.chars, text, false)
    }

    /// For host names, which compare case-insensitively; the pattern is
    /// lowercased when compiled.
    pub(crate) fn matches_ignore_case(&self, text: &str) -> bool {
        wildcard_match(&self.chars, text, true)
    }
}

/// The classic linear-backtracking glob match: on a mismatch it only ever
/// returns to the last `*`, so the cost is O(pattern × text) at worst and
/// usually linear — no pattern a client influences can make it explode.
fn wildcard_match(pattern: &[char], text: &str, fold_case: bool) -> bool {
    let text: Vec<char> = if fold_case {
        text.chars().map(|c| c.to_ascii_lowercase()).collect()
    } else {
        text.chars().collect()
    };
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_alb() {
        let cases = [
            ("/api/*", "/api/users", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api", false),
            ("/api*", "/api", true),
            ("*", "", true),
            ("*", "/anything", true),
            ("/v?/items", "/v1/items", true),
            ("/v?/items", "/v10/items", false),
            ("/img/*.png", "/img/a/b.png", true),
            ("/img/*.png", "/img/a/b.jpg", false),
            ("/a*b*c", "/axxbyyc", true),
            ("/a*b*c", "/axxbyy", false),
            ("/exact", "/exact", true),
            ("/exact", "/Exact", false),
            ("/é/*", "/é/x", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(text),
                want,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn hosts_compare_without_case() {
        let p = Pattern::new("*.example.com");
        assert!(p.matches_ignore_case("WWW.Example.COM"));
        assert!(!p.matches_ignore_case("example.com"));
    }

    #[test]
    fn many_stars_stay_cheap() {
        let p = Pattern::new(&"*a".repeat(50));
        let text = "a".repeat(49) + "b";
        assert!(!p.matches(&text));
    }
}
