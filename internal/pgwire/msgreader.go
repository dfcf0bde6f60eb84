package pgwire

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// readBufferSize is the msgReader's initial buffer: many answers of a
	// lock session fit in one read.
	readBufferSize = 8 << 10

	// maxMessageLen bounds a message's length: a lock session's answers are
	// small, so a larger length means a corrupt stream, not a message to
	// allocate for.
	maxMessageLen = 64 << 20
)

// msgReader reads the server's messages from the connection into a buffer
// of its own, so that what has been received and not yet decoded is known
// (buffered), and so that a read that ends early, on a deadline, loses
// nothing: the next call goes on where it stopped. It is used by one
// goroutine at a time, the holder of the session's read role.
type msgReader struct {
	conn net.Conn
	buf  []byte
	r, w int // buf[r:w] is received and not yet decoded

	// Messages are decoded into these, reused: a message is valid until
	// the next call of next.
	dataRow   pgproto3.DataRow
	complete  pgproto3.CommandComplete
	errorResp pgproto3.ErrorResponse
	ready     pgproto3.ReadyForQuery
	param     pgproto3.ParameterStatus
	notice    pgproto3.NoticeResponse
	notify    pgproto3.NotificationResponse
	rowDesc   pgproto3.RowDescription
	empty     pgproto3.EmptyQueryResponse
	parsed    pgproto3.ParseComplete
	bound     pgproto3.BindComplete
	noData    pgproto3.NoData
}

func newMsgReader(conn net.Conn) *msgReader {
	return &msgReader{conn: conn, buf: make([]byte, readBufferSize)}
}

// buffered returns the number of bytes received and not yet decoded.
func (m *msgReader) buffered() int { return m.w - m.r }

// next returns the next message, reading from the connection as needed. Its
// error is the connection's (a deadline's included, after which next may be
// called again), or a protocol violation.
func (m *msgReader) next() (pgproto3.BackendMessage, error) {
	for {
		if m.w-m.r >= 5 {
			n := int(binary.BigEndian.Uint32(m.buf[m.r+1:]))
			if n < 4 || n > maxMessageLen {
				return nil, fmt.Errorf("%w: a message of length %d", errProtocol, n)
			}
			if m.w-m.r >= 1+n {
				typ, body := m.buf[m.r], m.buf[m.r+5:m.r+1+n]
				m.r += 1 + n
				return m.decode(typ, body)
			}
			if err := m.fill(1 + n); err != nil {
				return nil, err
			}
			continue
		}
		if err := m.fill(5); err != nil {
			return nil, err
		}
	}
}

// fill reads at least once from the connection, having made room for a
// message of need bytes at buf[r:].
func (m *msgReader) fill(need int) error {
	if m.r == m.w {
		m.r, m.w = 0, 0
	}
	if len(m.buf)-m.r < need {
		if need > len(m.buf) {
			buf := make([]byte, max(need, 2*len(m.buf)))
			m.w = copy(buf, m.buf[m.r:m.w])
			m.buf = buf
		} else {
			m.w = copy(m.buf, m.buf[m.r:m.w])
		}
		m.r = 0
	}
	n, err := m.conn.Read(m.buf[m.w:])
	m.w += n
	if n > 0 {
		return nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// decode decodes a message of type typ.
func (m *msgReader) decode(typ byte, body []byte) (pgproto3.BackendMessage, error) {
	var msg pgproto3.BackendMessage
	switch typ {
	case 'D':
		msg = &m.dataRow
	case 'C':
		msg = &m.complete
	case 'E':
		msg = &m.errorResp
	case 'Z':
		msg = &m.ready
	case 'S':
		msg = &m.param
	case 'N':
		msg = &m.notice
	case 'A':
		msg = &m.notify
	case 'T':
		msg = &m.rowDesc
	case 'I':
		msg = &m.empty
	case '1':
		msg = &m.parsed
	case '2':
		msg = &m.bound
	case 'n':
		msg = &m.noData
	default:
		// COPY and the rest: never asked for.
		return nil, fmt.Errorf("%w: unexpected message type %q", errProtocol, typ)
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: %w", errProtocol, err)
	}
	return msg, nil
}
