package snabbconf

import (
	"fmt"
	"strings"
)

// This file turns the text into a tree of statements, knowing nothing of the
// schema. The syntax is the one Snabb's lib/yang parser accepts (RFC 7950
// §6.1 lexical rules): `keyword [argument] ;` or `keyword [argument] { ... }`;
// arguments are unquoted (ending at white space or one of ; { } " ' /),
// 'single-quoted' (no escapes) or "double-quoted" (\n \t \" \\; any other
// backslash is kept), and quoted pieces join with +. Comments are // to the
// end of the line and /* ... */; '#' is not a comment.

// maxDepth bounds block nesting; the schema needs 6 levels.
const maxDepth = 32

// stmt is one statement of the file.
type stmt struct {
	kw     string
	arg    string
	hasArg bool // an argument was written, possibly the empty "" string
	block  bool // { ... } rather than ;
	kids   []*stmt
	line   int   // line of the keyword
	parent *stmt // nil for the root
}

// path is the slash-joined keywords from the top, s's last; "" for the
// root. Only errors need it, so it is built on demand.
func (s *stmt) path() string {
	if s == nil || s.parent == nil {
		return ""
	}
	if p := s.parent.path(); p != "" {
		return p + "/" + s.kw
	}
	return s.kw
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tString
	tSemi
	tOpen
	tClose
)

type token struct {
	kind tokKind
	text string
	line int
}

type lexer struct {
	p    *parser
	src  []byte
	pos  int
	line int
	col  int   // display column of src[pos], tabs to multiples of 8
	at   *stmt // the statement being read, for errors
}

func (l *lexer) errf(line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	path := l.at.path()
	if path != "" {
		msg = path + ": " + msg
	}
	return &Error{File: l.p.file, Line: line, Path: path, Msg: msg, Err: ErrSyntax}
}

// advance consumes one byte, keeping line and column.
func (l *lexer) advance() byte {
	c := l.src[l.pos]
	l.pos++
	switch {
	case c == '\n':
		l.line++
		l.col = 0
	case c == '\t':
		l.col = (l.col/8 + 1) * 8
	case c&0xC0 != 0x80: // not a UTF-8 continuation byte
		l.col++
	}
	return c
}

func (l *lexer) peek(off int) byte {
	if l.pos+off < len(l.src) {
		return l.src[l.pos+off]
	}
	return 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// skip passes white space and comments.
func (l *lexer) skip() error {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case isSpace(c):
			l.advance()
		case c == '/' && l.peek(1) == '/':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.advance()
			}
		case c == '/' && l.peek(1) == '*':
			start := l.line
			l.advance()
			l.advance()
			for {
				if l.pos >= len(l.src) {
					return l.errf(start, "unterminated /* comment")
				}
				if l.src[l.pos] == '*' && l.peek(1) == '/' {
					l.advance()
					l.advance()
					break
				}
				l.advance()
			}
		case c == '/':
			return l.errf(l.line, "unexpected '/' (comments are // or /* */)")
		default:
			return nil
		}
	}
	return nil
}

func (l *lexer) next() (token, error) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	if l.pos >= len(l.src) {
		return token{kind: tEOF, line: l.line}, nil
	}
	line := l.line
	switch c := l.src[l.pos]; c {
	case ';':
		l.advance()
		return token{kind: tSemi, line: line}, nil
	case '{':
		l.advance()
		return token{kind: tOpen, line: line}, nil
	case '}':
		l.advance()
		return token{kind: tClose, line: line}, nil
	case '"', '\'':
		s, err := l.quoted()
		return token{kind: tString, text: s, line: line}, err
	}
	start := l.pos
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		if isSpace(c) || c == ';' || c == '{' || c == '}' || c == '"' || c == '\'' || c == '/' {
			break
		}
		l.advance()
	}
	return token{kind: tWord, text: string(l.src[start:l.pos]), line: line}, nil
}

// quoted reads one quoted string and any "+"-joined continuations.
func (l *lexer) quoted() (string, error) {
	var b strings.Builder
	for {
		if err := l.quotedPiece(&b); err != nil {
			return "", err
		}
		// Look past white space for a "+"; put nothing back if absent,
		// since the white space separates tokens anyway.
		if err := l.skip(); err != nil {
			return "", err
		}
		if l.pos >= len(l.src) || l.src[l.pos] != '+' {
			return b.String(), nil
		}
		line := l.line
		l.advance()
		if err := l.skip(); err != nil {
			return "", err
		}
		if c := l.peek(0); c != '"' && c != '\'' {
			return "", l.errf(line, "'+' must join two quoted strings")
		}
	}
}

// quotedPiece reads one quoted string. A line break inside it drops the
// next line's indentation up to and including the opening quote's column
// (RFC 7950 §6.1.3), as Snabb's parser does for both kinds of quote.
func (l *lexer) quotedPiece(b *strings.Builder) error {
	start, qcol := l.line, l.col
	q := l.advance()
	for {
		if l.pos >= len(l.src) {
			return l.errf(start, "unterminated %c string", q)
		}
		c := l.advance()
		switch {
		case c == q:
			return nil
		case c == '\\' && q == '"':
			switch l.peek(0) {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '"':
				b.WriteByte('"')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte('\\')
				continue
			}
			l.advance()
		case c == '\r' && l.peek(0) == '\n':
			// CRLF: the \n that follows does the work.
		case c == '\n':
			b.WriteByte('\n')
			for l.pos < len(l.src) && l.col <= qcol {
				d := l.src[l.pos]
				if d != ' ' && d != '\t' {
					break
				}
				l.advance()
				if l.col > qcol+1 { // a tab that runs past the cut
					b.WriteString(strings.Repeat(" ", l.col-qcol-1))
				}
			}
		default:
			b.WriteByte(c)
		}
	}
}

// isIdentifier reports whether s is a YANG identifier: [A-Za-z_][A-Za-z0-9_.-]*.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tSemi:
		return "';'"
	case tOpen:
		return "'{'"
	case tClose:
		return "'}'"
	case tString:
		return fmt.Sprintf("quoted string %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// parseTree reads the whole file into a tree under an unnamed root block.
func (p *parser) parseTree(src []byte) (*stmt, error) {
	l := &lexer{p: p, src: src, line: 1}
	root := &stmt{block: true}
	stack := []*stmt{root}
	for {
		top := stack[len(stack)-1]
		l.at = top
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tEOF:
			if len(stack) > 1 {
				return nil, l.errf(top.line, "'{' is never closed")
			}
			return root, nil
		case tClose:
			if len(stack) == 1 {
				return nil, l.errf(t.line, "unexpected '}' (unbalanced braces)")
			}
			stack = stack[:len(stack)-1]
			continue
		case tWord:
		default:
			return nil, l.errf(t.line, "expected a keyword, found %s", describe(t))
		}
		if !isIdentifier(t.text) {
			if t.text[0] == '#' {
				return nil, l.errf(t.line, "'#' does not start a comment (use // or /* */)")
			}
			return nil, l.errf(t.line, "%q is not a keyword", t.text)
		}
		s := &stmt{kw: t.text, line: t.line, parent: top}
		l.at = s
		t, err = l.next()
		if err != nil {
			return nil, err
		}
		if t.kind == tWord || t.kind == tString {
			s.arg, s.hasArg = t.text, true
			if t, err = l.next(); err != nil {
				return nil, err
			}
		}
		switch t.kind {
		case tSemi:
		case tOpen:
			if len(stack) > maxDepth {
				return nil, l.errf(s.line, "blocks nested too deep")
			}
			s.block = true
		default:
			if s.hasArg {
				return nil, l.errf(s.line, "missing ';' after value %q (found %s)", s.arg, describe(t))
			}
			return nil, l.errf(s.line, "expected a value, ';' or '{', found %s", describe(t))
		}
		top.kids = append(top.kids, s)
		if s.block {
			stack = append(stack, s)
		}
	}
}
