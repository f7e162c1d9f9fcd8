//! One SMTP reply as the raw test client parsed it, with the assertions the tests make on replies.

/// One SMTP reply: the code and the text of every line (without the `250-` / `250 ` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// Text of each line, prefix removed.
    pub lines: Vec<String>,
}

impl Reply {
    /// The first line's text (enhanced status code first, when the server sends one).
    pub fn first(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// The reply as the server sent it, lines joined by `\n` (for assertion messages).
    pub fn raw(&self) -> String {
        let n = self.lines.len();
        let mut out = Vec::with_capacity(n);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push(format!("{}{sep}{line}", self.code));
        }
        out.join("\n")
    }

    /// Asserts the code and that the first line starts with `text` (e.g. `"5.1.1"` or a whole line); the
    /// text is compared ignoring ASCII case (it is for humans; the codes are what clients act on).
    #[track_caller]
    pub fn expect(&self, code: u16, text: &str) -> &Reply {
        let first = self.first().as_bytes();
        let starts =
            first.len() >= text.len() && first[..text.len()].eq_ignore_ascii_case(text.as_bytes());
        assert!(
            self.code == code && starts,
            "expected `{code} {text}...`, got `{}`",
            self.raw()
        );
        self
    }

    /// Whether an EHLO reply lists `keyword` (compared case-insensitively on the first word of a line).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keyword_line(keyword).is_some()
    }

    /// The EHLO line whose first word is `keyword`, e.g. `SIZE 10000` for `SIZE`.
    pub fn keyword_line(&self, keyword: &str) -> Option<&str> {
        self.lines.iter().skip(1).map(String::as_str).find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
        })
    }
}
