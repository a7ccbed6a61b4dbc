package sftpserve

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// Relay splices a client's SFTP stream to a session host's ServeFD and
// serves, itself, the READ and WRITE packets on each handle whose fd the
// host passed (fxpFD): a pread or pwrite on the host's open file, the
// answer straight back to the client. Every other packet goes to the host
// unchanged, every answer of the host to the client. The process running
// Relay (the agent, root) never opens a path: it reads and writes only
// files the session's user opened with her rights, through her fds.
type Relay struct {
	Client       *bufio.Reader // the client's stream
	ClientOut    io.Writer     // to the client
	Host         *net.UnixConn // the session host's socket
	HostBuffered []byte        // bytes of Host's stream already read
	// MaxFDs bounds the fds held at once (an fd past it is closed and
	// its handle served by the host). 0 means 64.
	MaxFDs int
	// ThreadSetup, if set, runs on the OS thread that does the pread and
	// pwrite, locked to it and ended with it, before the first of them
	// (the agent takes the user's fsuid and drops its capabilities there).
	// An error serves every packet through the host.
	ThreadSetup func() error

	wmu      sync.Mutex // one writer of ClientOut at a time, whole packets
	mu       sync.Mutex
	fds      map[string]*fdFile
	thread   int   // threadShared, threadOwn, threadFailed
	setupErr error // why ThreadSetup failed (up's only)
	// Local counts the bytes of READ and WRITE packets served here (read
	// it after Run).
	Local int64
}

type fdFile struct {
	fd     int
	name   string
	rd, wr bool
}

// Run relays until the host's stream ends (it closes after the client's
// stream ended), then calls hostDone, then waits for the client's side.
func (r *Relay) Run(hostDone func()) error {
	if r.MaxFDs <= 0 {
		r.MaxFDs = 64
	}
	r.fds = map[string]*fdFile{}
	upErr := make(chan error, 1)
	go func() { upErr <- r.up() }()
	err := r.down()
	if hostDone != nil {
		hostDone()
	}
	if uerr := <-upErr; err == nil {
		err = uerr
	}
	r.mu.Lock()
	for _, f := range r.fds {
		syscall.Close(f.fd)
	}
	r.fds = nil
	r.mu.Unlock()
	return err
}

// The states of the client side's thread (Relay.thread).
const (
	threadShared = iota // no fd used yet: any thread of the runtime
	threadOwn           // locked to the goroutine, ThreadSetup done
	threadFailed        // ThreadSetup failed: every packet goes to the host
)

func (r *Relay) lookup(h []byte) *fdFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.thread == threadFailed {
		return nil
	}
	return r.fds[string(h)]
}

// ownThread locks the calling goroutine (up) to its thread and runs
// ThreadSetup there, once, before the first pread or pwrite. Not at the
// start: a stream that only makes directories and small files (their
// fds are never passed) keeps sharing the runtime's threads — waking a
// locked goroutine costs a thread switch per request, 0.2 ms per file in
// a tree. A big file's stream gains from its own thread (10-20 % less
// agent CPU per GiB pushed, in turns). With ThreadSetup the thread is
// never unlocked: it ends with the goroutine, so its changed
// credentials serve nothing else.
func (r *Relay) ownThread() bool {
	r.mu.Lock()
	st := r.thread
	r.mu.Unlock()
	if st != threadShared {
		return st == threadOwn
	}
	runtime.LockOSThread()
	st = threadOwn
	if r.ThreadSetup != nil {
		if err := r.ThreadSetup(); err != nil {
			r.setupErr = fmt.Errorf("sftp fd relay: %w", err)
			st = threadFailed
		}
	}
	r.mu.Lock()
	r.thread = st
	if st == threadFailed {
		for h, f := range r.fds {
			syscall.Close(f.fd)
			delete(r.fds, h)
		}
	}
	r.mu.Unlock()
	return st == threadOwn
}

func (r *Relay) writeClient(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.ClientOut.Write(b)
	return err
}

// up carries the client's packets: READ and WRITE on a passed fd served
// here, the rest to the host. It ends the host's input when the client's
// stream ends.
func (r *Relay) up() error {
	hw := bufio.NewWriterSize(r.Host, 256<<10)
	defer r.Host.CloseWrite()
	defer func() {
		if r.thread == threadOwn && r.ThreadSetup == nil {
			runtime.UnlockOSThread()
		}
	}()
	// Packets are parsed where they lie in a buffer of several (Peek,
	// no copy of their own), and the answers to them all go in one write
	// when it runs dry: a client ahead of the relay gets its WRITE
	// acknowledgements a few at a time, fewer SSH packets and wake-ups.
	br := bufio.NewReaderSize(r.Client, 1<<20)
	var out []byte
	for {
		if br.Buffered() == 0 {
			if err := r.writeClient(out); err != nil {
				return err
			}
			out = out[:0]
			if err := hw.Flush(); err != nil {
				return err
			}
		}
		pkt, err := peekPacket(br)
		if err != nil {
			hw.Flush()
			r.writeClient(out)
			if err == io.EOF {
				return r.setupErr
			}
			return err
		}
		if err := r.upPacket(pkt, hw, &out); err != nil {
			return err
		}
		br.Discard(len(pkt))
	}
}

// peekPacket returns the next whole packet in br without consuming it.
func peekPacket(br *bufio.Reader) ([]byte, error) {
	hdr, err := br.Peek(4)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n < 5 || n > maxMsg {
		return nil, fmt.Errorf("sftp: packet of %d bytes; want 5 to %d", n, maxMsg)
	}
	pkt, err := br.Peek(int(n) + 4)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return pkt, err
}

// upPacket serves one packet of the client's (a READ or WRITE on a
// passed fd: its answer appended to *out) or forwards it to the host.
func (r *Relay) upPacket(pkt []byte, hw *bufio.Writer, out *[]byte) error {
	typ := pkt[4]
	if typ != fxpWrite && typ != fxpRead && typ != fxpClose {
		_, err := hw.Write(pkt)
		return err
	}
	p := parser{b: pkt[5:]}
	id := p.u32()
	h := p.str()
	f := r.lookup(h)
	if f == nil || p.err != nil {
		_, err := hw.Write(pkt)
		return err
	}
	if typ == fxpClose {
		// The host closes its own fd and answers.
		r.mu.Lock()
		delete(r.fds, string(h))
		r.mu.Unlock()
		syscall.Close(f.fd)
		_, err := hw.Write(pkt)
		return err
	}
	var off uint64
	var data []byte
	var n uint32
	if typ == fxpWrite {
		off, data = p.u64(), p.str()
	} else {
		off, n = p.u64(), p.u32()
	}
	// A malformed packet, or one the fd's access mode does not allow,
	// goes to the host, which answers it.
	if p.err != nil || (typ == fxpWrite && !f.wr) || (typ == fxpRead && !f.rd) || !r.ownThread() {
		_, err := hw.Write(pkt)
		return err
	}
	if typ == fxpWrite {
		*out = appendStatus(*out, id, pwriteAll(f, data, off))
		r.Local += int64(len(data))
	} else {
		*out = r.read(*out, id, f, off, n)
	}
	if len(*out) >= 256<<10 {
		if err := r.writeClient(*out); err != nil {
			return err
		}
		*out = (*out)[:0]
	}
	return nil
}

func pwriteAll(f *fdFile, data []byte, off uint64) error {
	if off > math.MaxInt64-uint64(len(data)) {
		return &os.PathError{Op: "write", Path: f.name, Err: syscall.EINVAL}
	}
	for len(data) > 0 {
		n, err := syscall.Pwrite(f.fd, data, int64(off))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "write", Path: f.name, Err: err}
		}
		if n == 0 {
			return &os.PathError{Op: "write", Path: f.name, Err: io.ErrShortWrite}
		}
		data, off = data[n:], off+uint64(n)
	}
	return nil
}

// read appends a DATA answer of up to n bytes at off (at most MaxPacket,
// as the host's server does), or an EOF or error STATUS.
func (r *Relay) read(out []byte, id uint32, f *fdFile, off uint64, n uint32) []byte {
	n = min(n, MaxPacket)
	if off > math.MaxInt64-uint64(n) {
		return appendStatus(out, id, &os.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL})
	}
	start := len(out)
	out, _ = beginPacket(out, fxpData, id)
	out = binary.BigEndian.AppendUint32(out, 0)
	hdr := len(out)
	out = append(out, make([]byte, n)...)
	got := 0
	for got < int(n) {
		m, err := syscall.Pread(f.fd, out[hdr+got:], int64(off)+int64(got))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if got == 0 {
				return appendStatus(out[:start], id, &os.PathError{Op: "read", Path: f.name, Err: err})
			}
			break
		}
		if m == 0 {
			break
		}
		got += m
	}
	if got == 0 {
		return appendStatus(out[:start], id, io.EOF)
	}
	r.Local += int64(got)
	out = out[:hdr+got]
	binary.BigEndian.PutUint32(out[hdr-4:], uint32(got))
	return endPacket(out, start)
}

// down carries the host's answers to the client, keeping the fds that
// come with fxpFD packets.
func (r *Relay) down() error {
	fr := &fdReader{uc: r.Host}
	defer fr.closeAll()
	hr := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(r.HostBuffered), fr), 256<<10)
	var buf, out []byte
	for {
		if hr.Buffered() == 0 && len(out) > 0 {
			if err := r.writeClient(out); err != nil {
				return err
			}
			out = out[:0]
		}
		pkt, err := readPacket(hr, buf)
		if err != nil {
			r.writeClient(out)
			if err == io.EOF {
				return nil
			}
			return err
		}
		buf = pkt
		if pkt[4] != fxpFD {
			out = append(out, pkt...)
			if len(out) >= 256<<10 {
				if err := r.writeClient(out); err != nil {
					return err
				}
				out = out[:0]
			}
			continue
		}
		p := parser{b: pkt[5:]}
		h, name := p.str(), p.str()
		fd := fr.take()
		if fd < 0 || p.err != nil {
			if fd >= 0 {
				syscall.Close(fd)
			}
			continue
		}
		r.keep(string(h), string(name), fd)
	}
}

// keep holds fd for handle h if it may be served here: a regular local
// file (checked again: the host is the user's process), opened for
// reading or writing, within MaxFDs. Else it is closed and the host
// serves the handle.
func (r *Relay) keep(h, name string, fd int) {
	fl, err := fcntl(fd, syscall.F_GETFL, 0)
	if err != nil || FDFileOK(fd) != nil {
		syscall.Close(fd)
		return
	}
	f := &fdFile{fd: fd, name: name}
	switch fl & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		f.rd = true
	case syscall.O_WRONLY:
		f.wr = true
	case syscall.O_RDWR:
		f.rd, f.wr = true, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.thread == threadFailed || len(r.fds) >= r.MaxFDs || r.fds[h] != nil {
		syscall.Close(fd)
		return
	}
	r.fds[h] = f
}

// fdReader reads a unix socket and queues the fds that come with it.
type fdReader struct {
	uc  *net.UnixConn
	oob [64]byte
	q   []int
}

func (fr *fdReader) Read(b []byte) (int, error) {
	n, oobn, _, _, err := fr.uc.ReadMsgUnix(b, fr.oob[:])
	if oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(fr.oob[:oobn]); perr == nil {
			for _, m := range msgs {
				fds, err := syscall.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					if len(fr.q) >= 16 { // a host that sends fds without packets
						syscall.Close(fd)
						continue
					}
					fr.q = append(fr.q, fd)
				}
			}
		}
	}
	if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
		return 0, io.EOF
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (fr *fdReader) take() int {
	if len(fr.q) == 0 {
		return -1
	}
	fd := fr.q[0]
	fr.q = fr.q[1:]
	return fd
}

func (fr *fdReader) closeAll() {
	for _, fd := range fr.q {
		syscall.Close(fd)
	}
	fr.q = nil
}
