package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Client talks to a clipd socket. It is meant for one goroutine (clipd tail,
// tests, scripts): Command reads ahead until its reply and keeps the
// messages it passes for Next.
type Client struct {
	nc      net.Conn
	sc      *bufio.Scanner
	hello   Hello
	pending []Message
	nextID  int
}

// Dial connects to the socket at path and reads the hello line.
func Dial(path string) (*Client, error) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	c := newClient(nc)
	m, err := c.read()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading hello from %s: %w", path, err)
	}
	if m.Type != "hello" {
		nc.Close()
		if m.Type == "error" {
			return nil, fmt.Errorf("%s: %s", path, m.Message)
		}
		return nil, fmt.Errorf("%s: expected hello, got %q", path, m.Type)
	}
	if err := m.Decode(&c.hello); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: bad hello: %w", path, err)
	}
	return c, nil
}

func newClient(nc net.Conn) *Client {
	c := &Client{nc: nc, sc: bufio.NewScanner(nc)}
	// Replies to classify may carry large data; results are small.
	c.sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	c.sc.Split(scanWholeLines)
	return c
}

// Hello is the greeting the server sent.
func (c *Client) Hello() Hello { return c.hello }

// Next returns the next message from the server.
func (c *Client) Next() (Message, error) {
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		return m, nil
	}
	return c.read()
}

// Subscribe limits results to cameras (none: all) and waits until the server
// has applied the filter.
func (c *Client) Subscribe(cameras []string) error {
	_, err := c.Command(Command{Cmd: "subscribe", Cameras: cameras})
	return err
}

// CommandError is the server's "error" answer to a command.
type CommandError struct {
	Cmd     string
	Message string
}

func (e *CommandError) Error() string { return fmt.Sprintf("%s: %s", e.Cmd, e.Message) }

// Command sends cmd and returns the server's reply. An id is assigned if cmd
// has none. An "error" answer is returned as a *CommandError.
func (c *Client) Command(cmd Command) (Message, error) {
	if cmd.ID == nil {
		c.nextID++
		cmd.ID = json.RawMessage(strconv.Quote("c" + strconv.Itoa(c.nextID)))
	}
	if err := c.Send(cmd); err != nil {
		return Message{}, err
	}
	for {
		m, err := c.read()
		if err != nil {
			return Message{}, err
		}
		if (m.Type == "reply" || m.Type == "error") && bytes.Equal(m.ID, cmd.ID) {
			if m.Type == "error" {
				return m, &CommandError{Cmd: cmd.Cmd, Message: m.Message}
			}
			return m, nil
		}
		c.pending = append(c.pending, m)
	}
}

// Send writes cmd without waiting for an answer.
func (c *Client) Send(cmd Command) error {
	line, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	_, err = c.nc.Write(append(line, '\n'))
	return err
}

// SetReadDeadline bounds the wait of the next reads (Next, Command), as
// net.Conn's does.
func (c *Client) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Close disconnects.
func (c *Client) Close() error { return c.nc.Close() }

// errTruncatedLine wraps io.ErrUnexpectedEOF: the server went away in the
// middle of a line, as it may when it shuts down while a client is behind.
var errTruncatedLine = fmt.Errorf("server closed the connection in the middle of a line: %w", io.ErrUnexpectedEOF)

// scanWholeLines is bufio.ScanLines without its acceptance of a final line
// that lacks its newline: every line the server completes ends in one, so
// such a tail is a cut-off message, not a message.
func scanWholeLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return 0, nil, errTruncatedLine
	}
	return 0, nil, nil
}

func (c *Client) read() (Message, error) {
	if !c.sc.Scan() {
		if err := c.sc.Err(); err != nil {
			return Message{}, err
		}
		return Message{}, fmt.Errorf("server closed the connection: %w", io.EOF)
	}
	raw := append(json.RawMessage(nil), c.sc.Bytes()...)
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return Message{}, fmt.Errorf("bad line from server: %w", err)
	}
	m.Raw = raw
	return m, nil
}
