//! How pre-flight reads a predicate: a small SQL tokenizer that splits it into the [`Word`]s
//! outside string literals and comments, with what surrounds each (a call, a qualified name),
//! and the user variables in it. It only has to find names; the predicate itself is sent to the
//! server as written.

/// A word of the predicate outside strings and comments: bare or backquoted, whether an
/// opening parenthesis follows it (a function call), and whether a dot follows it (it
/// qualifies a name: `t.col`, `db.t`) or precedes it (it is qualified).
#[derive(Debug, PartialEq)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) quoted: bool,
    pub(super) call: bool,
    pub(super) dot_after: bool,
    pub(super) dot_before: bool,
}

/// Splits SQL into words, skipping string literals and comments. Also reports user variables
/// (`@name`, not `@@system`) as words starting with `@`.
pub(super) fn words(sql: &str) -> Vec<Word> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let next_is = |mut j: usize, wanted: char| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        chars.get(j) == Some(&wanted)
    };
    let previous_is_dot =
        |start: usize| chars[..start].iter().rev().find(|c| !c.is_whitespace()) == Some(&'.');
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                i += 1;
                while i < chars.len() {
                    let escaped = chars[i] == '\\';
                    let doubled = chars[i] == c && chars.get(i + 1) == Some(&c);
                    if escaped || doubled {
                        i += 2;
                    } else if chars[i] == c {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            '`' => {
                let mut text = String::new();
                let start = i;
                i += 1;
                while i < chars.len() {
                    if chars[i] == '`' && chars.get(i + 1) == Some(&'`') {
                        text.push('`');
                        i += 2;
                    } else if chars[i] == '`' {
                        break;
                    } else {
                        text.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
                out.push(Word {
                    text,
                    quoted: true,
                    call: next_is(i, '('),
                    dot_after: next_is(i, '.'),
                    dot_before: previous_is_dot(start),
                });
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '@' => {
                let start = i;
                i += 1;
                if chars.get(i) == Some(&'@') {
                    // A system variable: read-only here, and the same in every statement.
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_alphanumeric() || "_.$".contains(chars[i]))
                    {
                        i += 1;
                    }
                    continue;
                }
                while i < chars.len() && (chars[i].is_alphanumeric() || "_$.".contains(chars[i])) {
                    i += 1;
                }
                out.push(Word {
                    text: chars[start..i].iter().collect(),
                    quoted: false,
                    call: false,
                    dot_after: false,
                    dot_before: false,
                });
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Word {
                    text,
                    quoted: false,
                    call: next_is(i, '('),
                    dot_after: next_is(i, '.'),
                    dot_before: previous_is_dot(start),
                });
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}
