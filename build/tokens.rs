//! A tokenizer that knows just enough of Java and Rust for build.rs: comments, string and char
//! literals, identifiers, numbers, punctuation; and the small helpers the readers share.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

/// Tokens of Java or Rust source: comments dropped, string and char literals kept whole
/// (escapes left as written), `'a` lifetimes dropped.
pub fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    s.push(chars[i]);
                    i += 1;
                }
                line += usize::from(chars[i] == '\n');
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token {
                tok: Tok::Str(s),
                line: start_line,
            });
        } else if c == '\'' {
            // A char literal ('x', '\n') or a Rust lifetime ('l): skip either.
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(chars[start..i].iter().collect()),
                line,
            });
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                line,
            });
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    out
}

pub fn is_ident(t: Option<&Token>, name: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(s), .. }) if s == name)
}

pub fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

pub fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token {
            tok: Tok::Ident(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// Index of the token closing the bracket opened at `open`.
pub fn closing(toks: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('{') | Tok::Punct('<') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('}') | Tok::Punct('>') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Splits `toks` at commas outside brackets.
pub fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('<') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('>') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        parts.push(&toks[start..]);
    }
    parts
}

/// The value of an integer constant expression: literals (decimal or hex, `_`, a type suffix
/// such as `L` or `u32`), `( )`, `*`, `+`, `-`, `<<`, `|`. `None` for anything else.
pub fn eval(toks: &[Token]) -> Option<i128> {
    fn literal(s: &str) -> Option<i128> {
        let s = s.replace('_', "");
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            return i128::from_str_radix(hex.trim_end_matches(['L', 'l']), 16).ok();
        }
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        let suffix = &s[digits.len()..];
        let known = [
            "", "L", "l", "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
        ];
        known
            .contains(&suffix)
            .then(|| digits.parse().ok())
            .flatten()
    }
    // Precedence climbing over: | (1), << (2), + - (3), * (4).
    fn expr(t: &[Token], pos: &mut usize, min: u8) -> Option<i128> {
        let mut lhs = atom(t, pos)?;
        loop {
            let (op, prec, width) =
                match (t.get(*pos).map(|t| &t.tok), t.get(*pos + 1).map(|t| &t.tok)) {
                    (Some(Tok::Punct('|')), _) => ('|', 1, 1),
                    (Some(Tok::Punct('<')), Some(Tok::Punct('<'))) => ('<', 2, 2),
                    (Some(Tok::Punct('+')), _) => ('+', 3, 1),
                    (Some(Tok::Punct('-')), _) => ('-', 3, 1),
                    (Some(Tok::Punct('*')), _) => ('*', 4, 1),
                    _ => return Some(lhs),
                };
            if prec < min {
                return Some(lhs);
            }
            *pos += width;
            let rhs = expr(t, pos, prec + 1)?;
            lhs = match op {
                '|' => lhs | rhs,
                '<' => lhs.checked_shl(u32::try_from(rhs).ok()?)?,
                '+' => lhs.checked_add(rhs)?,
                '-' => lhs.checked_sub(rhs)?,
                _ => lhs.checked_mul(rhs)?,
            };
        }
    }
    fn atom(t: &[Token], pos: &mut usize) -> Option<i128> {
        let tok = t.get(*pos)?;
        *pos += 1;
        match &tok.tok {
            Tok::Num(n) => literal(n),
            Tok::Punct('-') => atom(t, pos).map(|v| -v),
            Tok::Punct('(') => {
                let v = expr(t, pos, 0)?;
                is_punct(t.get(*pos), ')').then_some(())?;
                *pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
    let mut pos = 0;
    let v = expr(toks, &mut pos, 0)?;
    (pos == toks.len()).then_some(v)
}

pub fn text(toks: &[Token]) -> String {
    let mut s = String::new();
    for t in toks {
        match &t.tok {
            Tok::Ident(x) | Tok::Num(x) => {
                if s.ends_with(|c: char| c.is_alphanumeric()) {
                    s.push(' ');
                }
                s.push_str(x);
            }
            Tok::Str(x) => write!(s, "{x:?}").unwrap(),
            Tok::Punct(c) => s.push(*c),
        }
    }
    s
}
