//! Escaping and quoting of the text the templates write: Markdown-safe text ([`md_escape`]),
//! prose whose `code spans` survive in Markdown ([`md_prose`]) and HTML ([`html_prose`]), text
//! for an inline code span ([`md_code`]) and POSIX shell quoting ([`shell_quote`]).

/// `md` filter: text safe inside a Markdown table cell or paragraph.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push_str("\\`"),
            '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {}
            '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `prose` filter: a sentence tcobench wrote, whose `code spans` stay code spans (their text
/// through [`md_code`]) while everything between them is escaped like [`md_escape`]. With an odd
/// number of backticks the whole text is escaped.
pub fn md_prose(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return md_escape(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("`{}`", md_code(part))
            } else {
                md_escape(part)
            }
        })
        .collect()
}

/// `prose_html` filter: like [`md_prose`] for HTML — every part HTML-escaped, the parts between
/// backticks wrapped in `<code>`. The result is marked safe: nothing in it is unescaped input.
pub fn html_prose(s: &str) -> String {
    let escape = |t: &str| {
        let mut out = String::with_capacity(t.len());
        for c in t.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#x27;"),
                c => out.push(c),
            }
        }
        out
    };
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return escape(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

/// `code` filter: text for an inline Markdown code span (backticks replaced, `|` escaped for
/// tables, newlines flattened).
pub fn md_code(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => "'".to_string(),
            '|' => "\\|".to_string(),
            c if c.is_control() => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Quotes one argument for a POSIX shell when needed.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_html_wraps_code_and_escapes_everything() {
        assert_eq!(
            html_prose("method `<x>` & \"q\" <script>"),
            "method <code>&lt;x&gt;</code> &amp; &quot;q&quot; &lt;script&gt;"
        );
        assert_eq!(html_prose("odd ` <b>"), "odd ` &lt;b&gt;");
    }

    #[test]
    fn prose_keeps_code_spans_and_escapes_the_rest() {
        assert_eq!(
            md_prose("method `cpu_estimate` is *estimated* | <b>"),
            "method `cpu_estimate` is \\*estimated\\* \\| &lt;b&gt;"
        );
        // A span cannot be closed early by data: an odd count escapes everything.
        assert_eq!(md_prose("a `b"), "a \\`b");
        assert_eq!(md_prose("`x|y`"), "`x\\|y`");
    }
}
