//! How pre-flight reads a predicate: a small SQL tokenizer that splits it into the [`Word`]s
//! outside string literals and comments, with what surrounds each (a call, a qualified name),
//! and the user variables in it. It only has to find names; the predicate itself is sent to the
//! server as written.

/// A word of the predicate outside strings and comments: bare or backquoted, whether an
/// opening parenthesis follows it (a function call), and whether a dot follows it (it
/// qualifies a name: `t.col`, `db.t`) or precedes it (it is qualified).
#[derive(Debug, PartialEq)]
pub(super) struct Word {
    /// The word as written, without backquotes; a user variable keeps its `@`.
    pub(super) text: String,
    /// Whether it was backquoted.
    pub(super) quoted: bool,
    /// Whether an opening parenthesis follows it.
    pub(super) call: bool,
    /// Whether a dot follows it.
    pub(super) dot_after: bool,
    /// Whether a dot precedes it.
    pub(super) dot_before: bool,
}

/// Splits SQL into words, skipping string literals and comments. Also reports user variables
/// (`@name`, not `@@system`) as words starting with `@`.
pub(super) fn words(sql: &str) -> Vec<Word> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (word, next) = token(&chars, i);
        out.extend(word);
        i = next;
    }
    out
}

/// The token that starts at `start`: the word it is, if it is one, and where the next token
/// starts (past the end of the text when a string or comment is left open).
fn token(chars: &[char], start: usize) -> (Option<Word>, usize) {
    let second = chars.get(start + 1);
    match chars[start] {
        quote @ ('\'' | '"') => (None, string_end(chars, start, quote)),
        '`' => quoted_word(chars, start),
        '#' => (None, line_end(chars, start)),
        '-' if second == Some(&'-') => (None, line_end(chars, start)),
        '/' if second == Some(&'*') => (None, block_comment_end(chars, start)),
        '@' => variable(chars, start),
        c if c.is_alphabetic() || c == '_' || c == '$' => bare_word(chars, start),
        c if c.is_ascii_digit() => (None, number_end(chars, start)),
        _ => (None, start + 1),
    }
}

/// Where a string literal opened by `quote` at `start` ends, past its closing quote. A
/// backslash escapes the character after it, and a doubled quote stands for one.
fn string_end(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        let escaped = chars[i] == '\\';
        let doubled = chars[i] == quote && chars.get(i + 1) == Some(&quote);
        if escaped || doubled {
            i += 2;
        } else if chars[i] == quote {
            break;
        } else {
            i += 1;
        }
    }
    i + 1
}

/// The backquoted name at `start` (a doubled backquote stands for one), and where it ends.
fn quoted_word(chars: &[char], start: usize) -> (Option<Word>, usize) {
    let mut text = String::new();
    let mut i = start + 1;
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
    let end = i + 1;
    (Some(word(chars, text, true, start, end)), end)
}

/// Where a `#` or `--` comment ends: at the line break, since SQL goes on after it.
fn line_end(chars: &[char], start: usize) -> usize {
    scan(chars, start, |c| c != '\n')
}

/// Where a `/* ... */` comment ends, past its `*/`.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 2;
    while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
        i += 1;
    }
    i + 2
}

/// Where the number at `start` ends: its letters (`0x1F`, `1e5`) are no words.
fn number_end(chars: &[char], start: usize) -> usize {
    scan(chars, start, |c| c.is_alphanumeric() || c == '.')
}

/// The user variable at `start` (`@name`) as a word, and where it ends. A system variable
/// (`@@name`) is no word: it is read-only here, and the same in every statement.
fn variable(chars: &[char], start: usize) -> (Option<Word>, usize) {
    let name_part = |c: char| c.is_alphanumeric() || "_$.".contains(c);
    if chars.get(start + 1) == Some(&'@') {
        return (None, scan(chars, start + 2, name_part));
    }
    let end = scan(chars, start + 1, name_part);
    let word = Word {
        text: chars[start..end].iter().collect(),
        quoted: false,
        call: false,
        dot_after: false,
        dot_before: false,
    };
    (Some(word), end)
}

/// The unquoted word at `start` (a name, a keyword or a function), and where it ends.
fn bare_word(chars: &[char], start: usize) -> (Option<Word>, usize) {
    let end = scan(chars, start, |c| {
        c.is_alphanumeric() || c == '_' || c == '$'
    });
    let text = chars[start..end].iter().collect();
    (Some(word(chars, text, false, start, end)), end)
}

/// The word `text` that spans `start..end` of `chars`, with what surrounds it.
fn word(chars: &[char], text: String, quoted: bool, start: usize, end: usize) -> Word {
    Word {
        text,
        quoted,
        call: next_is(chars, end, '('),
        dot_after: next_is(chars, end, '.'),
        dot_before: chars[..start].iter().rev().find(|c| !c.is_whitespace()) == Some(&'.'),
    }
}

/// Whether the first character from `from` on that is not whitespace is `wanted`.
fn next_is(chars: &[char], from: usize, wanted: char) -> bool {
    chars.iter().skip(from).find(|c| !c.is_whitespace()) == Some(&wanted)
}

/// The first index from `from` on whose character is not `part` of the token, or the end.
fn scan(chars: &[char], from: usize, part: impl Fn(char) -> bool) -> usize {
    let mut i = from;
    while i < chars.len() && part(chars[i]) {
        i += 1;
    }
    i
}
