//! The CSV text of catalog files: an RFC 4180 reader that keeps each record's line
//! ([`parse_csv`], [`CsvRecord`]) and field quoting for writers ([`csv_field`]).

/// One CSV record with the physical line it starts on (the header is line 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRecord {
    /// Line number of the record's first character.
    pub line: usize,
    /// Fields, unquoted.
    pub fields: Vec<String>,
}

/// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF). Blank lines are skipped.
/// Returns the records including the header, or `(line, message)` for an unterminated quote.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut record_has_content = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                record_has_content = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                record_has_content = true;
            }
            '\r' => {}
            '\n' => {
                if record_has_content || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    out.push(CsvRecord {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                record_has_content = false;
                line += 1;
                start_line = line;
            }
            _ => {
                field.push(c);
                record_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err((start_line, "unterminated quoted field".into()));
    }
    if record_has_content || !field.is_empty() {
        fields.push(field);
        out.push(CsvRecord {
            line: start_line,
            fields,
        });
    }
    Ok(out)
}

/// Quotes a CSV field when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parser_handles_quotes_and_lines() {
        let r =
            parse_csv("a,b\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",2\r\nlast,3").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].fields, vec!["x,1", "say \"hi\""]);
        assert_eq!((r[2].line, r[2].fields[0].as_str()), (4, "multi\nline"));
        assert_eq!((r[3].line, r[3].fields[1].as_str()), (6, "3"));
        assert!(parse_csv("a\n\"open").is_err());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
