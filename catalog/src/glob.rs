//! The catalog's globs: `*` matches any run of characters (path separators
//! included), `?` one character, `[abc]`, `[a-z]` and `[!a-z]` one character
//! of a class. On Linux and macOS `\` makes the next character literal; on
//! Windows it is the path separator. Compiled once when the catalog loads,
//! matched without allocating. (A general-purpose glob crate compiled each
//! pattern into a regular expression's automaton, which cost more at every
//! agent start than all the matching of a scan.)

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(want) => *want == c,
            Token::Any => true,
            Token::Star => unreachable!("a star is handled by the matcher"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

/// Why a glob does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    /// A `[` with no `]` after it.
    UnclosedClass,
    /// `[]` or `[!]`.
    EmptyClass,
    /// A range whose end comes before its start (`[z-a]`).
    BackwardRange(char, char),
    /// A `\` at the very end.
    DanglingEscape,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::UnclosedClass => f.write_str("a `[` class is not closed by `]`"),
            GlobError::EmptyClass => f.write_str("an empty `[]` class matches nothing"),
            GlobError::BackwardRange(a, b) => write!(f, "the range `{a}-{b}` runs backwards"),
            GlobError::DanglingEscape => f.write_str("a `\\` at the end escapes nothing"),
        }
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    /// Compiles `pattern`; `escapes` makes `\` an escape (Linux, macOS).
    pub fn new(pattern: &str, escapes: bool) -> Result<Glob, GlobError> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    // `**` is the same as `*` here.
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::Any,
                '\\' if escapes => Token::Char(chars.next().ok_or(GlobError::DanglingEscape)?),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let mut lo = chars.next().ok_or(GlobError::UnclosedClass)?;
                        // `]` first in a class is a literal.
                        if lo == ']' && !first {
                            break;
                        }
                        if lo == '\\' && escapes {
                            lo = chars.next().ok_or(GlobError::UnclosedClass)?;
                        }
                        first = false;
                        let mut hi = lo;
                        if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            match ahead.peek() {
                                Some(&']') | None => {}
                                Some(_) => {
                                    chars.next();
                                    hi = chars.next().ok_or(GlobError::UnclosedClass)?;
                                    if hi == '\\' && escapes {
                                        hi = chars.next().ok_or(GlobError::UnclosedClass)?;
                                    }
                                    if hi < lo {
                                        return Err(GlobError::BackwardRange(lo, hi));
                                    }
                                }
                            }
                        }
                        ranges.push((lo, hi));
                    }
                    if ranges.is_empty() {
                        return Err(GlobError::EmptyClass);
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// The literal text every match starts with.
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether `s` matches the whole glob. A star remembers where it was so
    /// that a mismatch later retries it one character further: linear for
    /// the patterns of the catalog, at worst proportional to pattern length
    /// times text length.
    pub fn is_match(&self, s: &str) -> bool {
        let tokens = &self.tokens;
        let (mut p, mut i) = (0, 0);
        let mut retry: Option<(usize, usize)> = None;
        loop {
            if let Some(t) = tokens.get(p) {
                if *t == Token::Star {
                    p += 1;
                    retry = Some((p, i));
                    continue;
                }
                if let Some(c) = s[i..].chars().next()
                    && t.matches(c)
                {
                    p += 1;
                    i += c.len_utf8();
                    continue;
                }
            } else if i == s.len() {
                return true;
            }
            // Mismatch: let the last star take one more character.
            let Some((rp, ri)) = retry else {
                return false;
            };
            let Some(c) = s[ri..].chars().next() else {
                return false;
            };
            retry = Some((rp, ri + c.len_utf8()));
            p = rp;
            i = ri + c.len_utf8();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, s: &str) -> bool {
        Glob::new(pattern, true).unwrap().is_match(s)
    }

    #[test]
    fn stars_questions_and_classes() {
        assert!(m("Kaspersky Anti-Virus*", "Kaspersky Anti-Virus 21.3"));
        assert!(m("Kaspersky Anti-Virus*", "Kaspersky Anti-Virus"));
        assert!(!m("Kaspersky Anti-Virus*", "The Kaspersky Anti-Virus"));
        assert!(m("*K7TotalSecurity*", "xK7TotalSecurityy"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a*b", "abbb"));
        assert!(m("AVP.KES.*", "AVP.KES.11.1"));
        assert!(!m("AVP.KES.*", "AVPxKES.11"));
        assert!(m("f?o", "fóo"));
        assert!(!m("f?o", "fo"));
        assert!(m("v[0-9].[!x]", "v7.y"));
        assert!(!m("v[0-9].[!x]", "v7.x"));
        assert!(!m("v[0-9]", "va"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "aXb"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("*", ""));
        assert!(m("**x", "x"));
    }

    #[test]
    fn windows_paths_cross_separators_and_backslash_is_literal() {
        let g = Glob::new(r"c:\program files\cisco\amp\*\sfc.exe", false).unwrap();
        assert!(g.is_match(r"c:\program files\cisco\amp\8.1.7\sfc.exe"));
        assert!(g.is_match(r"c:\program files\cisco\amp\a\b\sfc.exe"));
        assert!(!g.is_match(r"c:\windows\system32\sfc.exe"));
        assert_eq!(g.literal_prefix(), r"c:\program files\cisco\amp\");
    }

    #[test]
    fn bad_globs_say_what_is_wrong() {
        assert_eq!(Glob::new("a[bc", true), Err(GlobError::UnclosedClass));
        assert_eq!(Glob::new("a[!]", true), Err(GlobError::UnclosedClass));
        assert_eq!(
            Glob::new("[z-a]", true),
            Err(GlobError::BackwardRange('z', 'a'))
        );
        assert_eq!(Glob::new("a\\", true), Err(GlobError::DanglingEscape));
        assert!(Glob::new("a\\", false).is_ok());
    }

    /// The reference: the same language matched by exhaustive recursion.
    fn reference(tokens: &[Token], s: &[char]) -> bool {
        match tokens.split_first() {
            None => s.is_empty(),
            Some((Token::Star, rest)) => (0..=s.len()).any(|k| reference(rest, &s[k..])),
            Some((t, rest)) => !s.is_empty() && t.matches(s[0]) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Agrees with the exhaustive matcher on small alphabets, where
        /// stars must backtrack often.
        #[test]
        fn agrees_with_exhaustive_matching(pattern in "[ab*?\\[\\]!-]{0,8}", s in "[abé]{0,10}") {
            if let Ok(g) = Glob::new(&pattern, true) {
                let chars: Vec<char> = s.chars().collect();
                prop_assert_eq!(g.is_match(&s), reference(&g.tokens, &chars));
            }
        }

        /// Never panics, whatever the pattern and text.
        #[test]
        fn never_panics(pattern in ".{0,20}", s in ".{0,40}", escapes: bool) {
            if let Ok(g) = Glob::new(&pattern, escapes) {
                let _ = g.is_match(&s);
                let _ = g.literal_prefix();
            }
        }
    }
}
