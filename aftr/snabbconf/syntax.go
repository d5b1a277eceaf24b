package snabbconf

import (
	"fmt"
	"io"
	"unsafe"
)

// This file reads the text as a stream of statements, knowing nothing of
// the schema. The syntax is the one Snabb's lib/yang parser accepts (RFC
// 7950 §6.1 lexical rules): `keyword [argument] ;` or `keyword [argument]
// { ... }`; arguments are unquoted (ending at white space or one of ; { } "
// ' /), 'single-quoted' (no escapes) or "double-quoted" (\n \t \" \\; any
// other backslash is kept), and quoted pieces join with +. Comments are //
// to the end of the line and /* ... */; '#' is not a comment.
//
// The file is never held whole, nor as a tree: the schema walk (schema.go)
// pulls the statements of the block it is in one by one (parser.child),
// so a binding table of a million softwires costs the parser one statement
// per level of nesting, reused. A statement is valid only until the next
// one at its level is read: nothing may keep a *stmt.

// maxDepth bounds block nesting; the schema needs 6 levels.
const maxDepth = 32

// stmt is one statement of the file.
type stmt struct {
	kw     string
	arg    []byte // valid until the next statement at this level is read
	hasArg bool   // an argument was written, possibly the empty "" string
	block  bool   // { ... } rather than ;
	line   int    // line of the keyword
	parent *stmt  // nil for the root
}

// tmp is the argument as a string sharing the statement's buffer: for
// parsing it on the spot, never to keep (see val).
func (s *stmt) tmp() string { return unsafe.String(unsafe.SliceData(s.arg), len(s.arg)) }

// val is the argument as a string of its own.
func (s *stmt) val() string { return string(s.arg) }

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

// token is one token; the text of a word or string is in lexer.text until
// the next one is read.
type token struct {
	kind tokKind
	line int
}

type lexer struct {
	p    *parser
	r    io.Reader
	buf  []byte // buf[pos:end] is read but not consumed
	pos  int
	end  int
	eof  bool  // r has no more
	rerr error // a read error, or the input past its bound
	read int64 // octets read from r
	max  int64 // bound on read
	line int
	col  int    // display column of the next byte, tabs to multiples of 8
	text []byte // the last word or string token
	at   *stmt  // the statement being read, for errors
}

const lexBuf = 64 << 10

func newLexer(p *parser, r io.Reader, max int64) *lexer {
	return &lexer{p: p, r: r, buf: make([]byte, lexBuf), line: 1, max: max}
}

// fill makes buf[pos:end] hold at least n octets unless the input ends
// first, and reports whether it does.
func (l *lexer) fill(n int) bool {
	if l.end-l.pos >= n {
		return true
	}
	if l.pos > 0 {
		l.end = copy(l.buf, l.buf[l.pos:l.end])
		l.pos = 0
	}
	for empty := 0; l.end < n && !l.eof; {
		m, err := l.r.Read(l.buf[l.end:])
		l.end += m
		l.read += int64(m)
		if m == 0 && err == nil {
			empty++
		}
		switch {
		case empty > 100:
			l.eof, l.rerr = true, fmt.Errorf("%s: %w", l.p.file, io.ErrNoProgress)
		case l.read > l.max:
			l.eof, l.end = true, l.end-int(l.read-l.max)
			l.rerr = &Error{File: l.p.file, Msg: fmt.Sprintf("more than %d octets", l.max), Err: ErrTooLarge}
		case err == io.EOF:
			l.eof = true
		case err != nil:
			l.eof, l.rerr = true, fmt.Errorf("%s: %w", l.p.file, err)
		}
	}
	return l.end-l.pos >= n
}

func (l *lexer) errf(line int, format string, args ...any) error {
	if l.rerr != nil {
		// The input stopped early: that, not what it cut short, is the error.
		return l.rerr
	}
	msg := fmt.Sprintf(format, args...)
	path := l.at.path()
	if path != "" {
		msg = path + ": " + msg
	}
	return &Error{File: l.p.file, Line: line, Path: path, Msg: msg, Err: ErrSyntax}
}

// step accounts for consuming c (column and line).
func (l *lexer) step(c byte) {
	switch {
	case c == '\n':
		l.line++
		l.col = 0
	case c == '\t':
		l.col = (l.col/8 + 1) * 8
	case c&0xC0 != 0x80: // not a UTF-8 continuation byte
		l.col++
	}
}

// advance consumes one byte, which fill has made available.
func (l *lexer) advance() byte {
	c := l.buf[l.pos]
	l.pos++
	l.step(c)
	return c
}

// peek returns the byte off positions ahead, or 0 past the end.
func (l *lexer) peek(off int) byte {
	if !l.fill(off + 1) {
		return 0
	}
	return l.buf[l.pos+off]
}

// more reports whether a byte is left.
func (l *lexer) more() bool { return l.pos < l.end || l.fill(1) }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// wordEnd marks the bytes that end an unquoted word.
var wordEnd = func() (t [256]bool) {
	for _, c := range []byte(" \t\n\r\v\f;{}\"'/") {
		t[c] = true
	}
	return
}()

// skip passes white space and comments.
func (l *lexer) skip() error {
	for l.more() {
		c := l.buf[l.pos]
		switch {
		case c == ' ' || c == '\n':
			// Indentation and line ends, the bulk of a big file, a run
			// at a time.
			i, col, line := l.pos, l.col, l.line
			for ; i < l.end; i++ {
				if d := l.buf[i]; d == ' ' {
					col++
				} else if d == '\n' {
					line, col = line+1, 0
				} else {
					break
				}
			}
			l.pos, l.col, l.line = i, col, line
		case isSpace(c):
			l.advance()
		case c == '/' && l.peek(1) == '/':
			for l.more() && l.buf[l.pos] != '\n' {
				l.advance()
			}
		case c == '/' && l.peek(1) == '*':
			start := l.line
			l.advance()
			l.advance()
			for {
				if !l.more() {
					return l.errf(start, "unterminated /* comment")
				}
				if l.buf[l.pos] == '*' && l.peek(1) == '/' {
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
	if !l.more() {
		if l.rerr != nil {
			return token{}, l.rerr
		}
		return token{kind: tEOF, line: l.line}, nil
	}
	line := l.line
	switch c := l.buf[l.pos]; c {
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
		l.text = l.text[:0]
		err := l.quoted()
		return token{kind: tString, line: line}, err
	}
	l.text = l.text[:0]
	for l.more() {
		// A run of word bytes within the buffer at a time.
		i := l.pos
		for i < l.end && !wordEnd[l.buf[i]] {
			if l.buf[i]&0xC0 != 0x80 {
				l.col++
			}
			i++
		}
		l.text = append(l.text, l.buf[l.pos:i]...)
		l.pos = i
		if i < l.end {
			break
		}
		if len(l.text) > maxString {
			return token{}, l.errf(line, "word longer than %d octets", maxString)
		}
	}
	return token{kind: tWord, line: line}, nil
}

// quoted reads one quoted string and any "+"-joined continuations into
// l.text.
func (l *lexer) quoted() error {
	for {
		if err := l.quotedPiece(); err != nil {
			return err
		}
		// Look past white space for a "+"; put nothing back if absent,
		// since the white space separates tokens anyway.
		if err := l.skip(); err != nil {
			return err
		}
		if !l.more() || l.buf[l.pos] != '+' {
			return nil
		}
		line := l.line
		l.advance()
		if err := l.skip(); err != nil {
			return err
		}
		if c := l.peek(0); c != '"' && c != '\'' {
			return l.errf(line, "'+' must join two quoted strings")
		}
	}
}

// quotedPiece reads one quoted string. A line break inside it drops the
// next line's indentation up to and including the opening quote's column
// (RFC 7950 §6.1.3), as Snabb's parser does for both kinds of quote.
func (l *lexer) quotedPiece() error {
	start, qcol := l.line, l.col
	q := l.advance()
	for {
		if !l.more() {
			return l.errf(start, "unterminated %c string", q)
		}
		if len(l.text) > maxString {
			return l.errf(start, "string longer than %d octets", maxString)
		}
		c := l.advance()
		switch {
		case c == q:
			return nil
		case c == '\\' && q == '"':
			switch l.peek(0) {
			case 'n':
				l.text = append(l.text, '\n')
			case 't':
				l.text = append(l.text, '\t')
			case '"':
				l.text = append(l.text, '"')
			case '\\':
				l.text = append(l.text, '\\')
			default:
				l.text = append(l.text, '\\')
				continue
			}
			l.advance()
		case c == '\r' && l.peek(0) == '\n':
			// CRLF: the \n that follows does the work.
		case c == '\n':
			l.text = append(l.text, '\n')
			for l.more() && l.col <= qcol {
				d := l.buf[l.pos]
				if d != ' ' && d != '\t' {
					break
				}
				l.advance()
				for i := qcol + 1; i < l.col; i++ { // a tab that runs past the cut
					l.text = append(l.text, ' ')
				}
			}
		default:
			l.text = append(l.text, c)
		}
	}
}

// maxString bounds one word or quoted string (a filter text is the
// longest leaf): past it a hostile file could make the lexer hold most of
// itself in one token.
const maxString = 1 << 20

// isIdentifier reports whether s is a YANG identifier: [A-Za-z_][A-Za-z0-9_.-]*.
func isIdentifier(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func describe(t token, text []byte) string {
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
		return fmt.Sprintf("quoted string %q", text)
	}
	return fmt.Sprintf("%q", text)
}

// keywords are the schema's keywords, so that reading one allocates
// nothing.
var keywords = map[string]string{}

func internKeywords[T any](specs map[string]spec[T]) {
	for k := range specs {
		keywords[k] = k
	}
}

// keyword returns b as a string, the schema's own when b is one of its
// keywords. A cache of the last keyword by (length, last byte) spares the
// map's hashing on the hot path, a binding table's repeated keywords.
func (p *parser) keyword(b []byte) string {
	h := (len(b)*31 + int(b[len(b)-1])) & (len(p.kwCache) - 1)
	if k := p.kwCache[h]; k == string(b) {
		return k
	}
	k, ok := keywords[string(b)]
	if !ok {
		return string(b)
	}
	p.kwCache[h] = k
	return k
}

// child reads the next statement of parent, the innermost open block, and
// returns nil at its end ('}', or the end of the file for the root). A
// block statement returned is open: its statements must be read (with
// child) before parent's next one.
func (p *parser) child(parent *stmt) (*stmt, error) {
	s, err := p.readChild(parent)
	if err != nil && p.treeErr == nil {
		p.treeErr = err
	}
	return s, err
}

func (p *parser) readChild(parent *stmt) (*stmt, error) {
	l := p.lex
	l.at = parent
	t, err := l.next()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case tEOF:
		if p.depth > 0 {
			return nil, l.errf(parent.line, "'{' is never closed")
		}
		return nil, nil
	case tClose:
		if p.depth == 0 {
			return nil, l.errf(t.line, "unexpected '}' (unbalanced braces)")
		}
		p.depth--
		return nil, nil
	case tWord:
	default:
		return nil, l.errf(t.line, "expected a keyword, found %s", describe(t, l.text))
	}
	if !isIdentifier(l.text) {
		if l.text[0] == '#' {
			return nil, l.errf(t.line, "'#' does not start a comment (use // or /* */)")
		}
		return nil, l.errf(t.line, "%q is not a keyword", l.text)
	}
	s := &p.stmts[p.depth+1]
	*s = stmt{kw: p.keyword(l.text), arg: s.arg[:0], line: t.line, parent: parent}
	l.at = s
	if t, err = l.next(); err != nil {
		return nil, err
	}
	if t.kind == tWord || t.kind == tString {
		// The token's buffer becomes the argument's, and the other way round.
		s.arg, l.text, s.hasArg = l.text, s.arg, true
		if t, err = l.next(); err != nil {
			return nil, err
		}
	}
	switch t.kind {
	case tSemi:
	case tOpen:
		if p.depth+1 > maxDepth {
			return nil, l.errf(s.line, "blocks nested too deep")
		}
		s.block = true
		p.depth++
	default:
		if s.hasArg {
			return nil, l.errf(s.line, "missing ';' after value %q (found %s)", s.arg, describe(t, l.text))
		}
		return nil, l.errf(s.line, "expected a value, ';' or '{', found %s", describe(t, l.text))
	}
	return s, nil
}

// drain reads the rest of the file for its syntax alone, from wherever the
// schema walk stopped, and returns its first syntax error if any.
func (p *parser) drain() error {
	for {
		top := &p.stmts[p.depth]
		s, err := p.child(top)
		if err != nil {
			return err
		}
		if s == nil && top == &p.stmts[0] {
			return nil
		}
	}
}
