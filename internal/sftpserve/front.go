package sftpserve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ServeFD is Serve for a peer that takes the bulk data of regular files
// itself (the agent, which asked for it with wire.Request.FdPass): every
// OPEN of a file is made here, with this process's rights, umask and
// path rules, and when fstat says the file is regular and on a local
// filesystem (FDFileOK) its fd goes to the peer on uc (SCM_RIGHTS, with an
// fxpFD packet naming the handle) once this process has served PassAfter
// bytes of it, so that the peer serves the rest of the READ and WRITE
// packets on that handle with pread and pwrite and those bytes never
// pass through this process. Everything else —
// paths, mkdir, rename, setstat, symlinks, directories, and the READ or
// WRITE of a handle the peer did not take (a FIFO, a device, a FUSE
// file) — is served here: the handle's own requests by the front, the
// rest by pkg/sftp's server behind it. r is the client's stream (reads
// may come from a buffer in front of uc); answers go to uc.
func ServeFD(r io.Reader, uc *net.UnixConn) error {
	f := &front{uc: uc, files: map[string]*os.File{}, unpassed: map[string]int64{}}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(pipeStream{Reader: pr, w: &packetWriter{f: f}, pr: pr}, "")
	}()
	err := f.loop(r, pw)
	pw.Close()
	if serr := <-done; err == nil {
		err = serr
	}
	for _, file := range f.files {
		file.Close()
	}
	uc.Close()
	return err
}

// PassAfter is how many bytes of a file ServeFD reads or writes itself
// before it passes the file's fd to the peer.
const PassAfter = 1 << 20

// HostBytes counts the bytes of READ and WRITE packets that front served
// itself (not the peer): tests check that a push through a passed fd
// leaves it at zero.
var HostBytes atomic.Int64

type front struct {
	uc    *net.UnixConn
	wmu   sync.Mutex // one packet at a time on uc: pkg/sftp's and the front's
	files map[string]*os.File
	// unpassed are the handles whose fd has not been offered to the peer
	// yet, with the bytes of READ and WRITE served here: the fd goes once
	// that reaches PassAfter. A small file (all of a typical tree) never
	// costs the fd's passing, checks and close in both processes — in
	// turns, a 2,000-file tree cost the agent 0.3-0.5 CPU-s more when
	// every file's fd was passed; a big one has its first MiB and the
	// packets in flight before the fd arrived written here.
	unpassed map[string]int64
	next     int
	out      []byte
}

// A handle of the front starts with "f"; pkg/sftp's are decimal numbers.
func (f *front) handle(h []byte) *os.File {
	if len(h) == 0 || h[0] != 'f' {
		return nil
	}
	return f.files[string(h)]
}

func (f *front) send(pkt []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_, err := f.uc.Write(pkt)
	return err
}

func (f *front) loop(r io.Reader, pw *io.PipeWriter) error {
	var buf []byte
	for {
		var err error
		buf, err = readPacket(r, buf)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		served, err := f.serve(buf)
		if err != nil {
			return err
		}
		if !served {
			if _, err := pw.Write(buf); err != nil {
				return fmt.Errorf("sftp server: %w", err)
			}
		}
	}
}

// serve answers pkt if it is the front's: an OPEN, or a request on one of
// its handles. false hands pkt to pkg/sftp's server.
func (f *front) serve(pkt []byte) (bool, error) {
	typ := pkt[4]
	p := parser{b: pkt[5:]}
	id := p.u32()
	if p.err != nil {
		return false, nil // pkg/sftp answers a malformed packet
	}
	f.out = f.out[:0]
	var pass string
	switch typ {
	case fxpOpen:
		path := string(p.str())
		pflags := p.u32()
		a := p.attrs()
		if p.err != nil {
			return false, nil
		}
		return true, f.open(id, path, pflags, a)
	case fxpClose, fxpRead, fxpWrite, fxpFstat, fxpFsetstat, fxpReaddir:
		h := p.str()
		file := f.handle(h)
		if p.err != nil || file == nil {
			return false, nil
		}
		served, unpassed := f.unpassed[string(h)]
		switch typ {
		case fxpClose:
			delete(f.files, string(h))
			delete(f.unpassed, string(h))
			f.out = appendStatus(f.out, id, file.Close())
		case fxpRead:
			off, n := p.u64(), p.u32()
			var got int
			f.out, got = f.read(id, file, off, n)
			served += int64(got)
		case fxpWrite:
			off, data := p.u64(), p.str()
			if p.err != nil {
				f.out = appendStatus(f.out, id, errors.New("bad write packet"))
				break
			}
			if off > 1<<62 {
				f.out = appendStatus(f.out, id, syscall.EINVAL)
				break
			}
			HostBytes.Add(int64(len(data)))
			served += int64(len(data))
			_, err := file.WriteAt(data, int64(off))
			f.out = appendStatus(f.out, id, err)
		case fxpFstat:
			var st syscall.Stat_t
			if err := fstat(file, &st); err != nil {
				f.out = appendStatus(f.out, id, err)
			} else {
				f.out = appendAttrsPacket(f.out, id, &st)
			}
		case fxpFsetstat:
			a := p.attrs()
			if p.err != nil {
				f.out = appendStatus(f.out, id, errors.New("bad fsetstat packet"))
				break
			}
			f.out = appendStatus(f.out, id, fsetstat(file, a))
		case fxpReaddir:
			f.out = appendStatus(f.out, id, &os.PathError{Op: "readdir", Path: file.Name(), Err: syscall.ENOTDIR})
		}
		if unpassed && typ != fxpClose {
			if served >= PassAfter {
				pass = string(h)
				delete(f.unpassed, pass)
			} else {
				f.unpassed[string(h)] = served
			}
		}
	case fxpExtended:
		name := p.str()
		if string(name) != "fsync@openssh.com" {
			return false, nil
		}
		file := f.handle(p.str())
		if p.err != nil || file == nil {
			return false, nil
		}
		f.out = appendStatus(f.out, id, file.Sync())
	default:
		return false, nil
	}
	if pass != "" {
		// Before the answer: the peer holds the fd before the client can
		// send its next packet for the handle.
		if err := f.passFD(pass, f.files[pass]); err != nil {
			return true, err
		}
	}
	return true, f.send(f.out)
}

// open opens path as pkg/sftp's server does (the flags; 0644 less the
// umask for a new file, or the permission bits the client gave), and
// O_NONBLOCK so that a FIFO or a device put where a file was answers an
// error instead of hanging the host (the READ or WRITE on it then fails).
func (f *front) open(id uint32, path string, pflags uint32, a attrs) error {
	var fl int
	switch {
	case pflags&(fxfRead|fxfWrite) == fxfRead|fxfWrite:
		fl = os.O_RDWR
	case pflags&fxfWrite != 0:
		fl = os.O_WRONLY
	case pflags&fxfRead != 0:
		fl = os.O_RDONLY
	default:
		return f.send(appendStatus(f.out, id, syscall.EINVAL))
	}
	if pflags&fxfCreat != 0 {
		fl |= os.O_CREATE
	}
	if pflags&fxfTrunc != 0 {
		fl |= os.O_TRUNC
	}
	if pflags&fxfExcl != 0 {
		fl |= os.O_EXCL
	}
	mode := os.FileMode(0o644)
	if a.flags&attrPerms != 0 {
		mode = os.FileMode(a.perms) & os.ModePerm
	}
	file, err := os.OpenFile(path, fl|syscall.O_NONBLOCK, mode)
	if err != nil {
		return f.send(appendStatus(f.out, id, err))
	}
	f.next++
	h := "f" + strconv.Itoa(f.next)
	f.files[h] = file
	f.unpassed[h] = 0
	out, start := beginPacket(f.out, fxpHandle, id)
	out = appendStr(out, h)
	return f.send(endPacket(out, start))
}

// passFD sends the fd of a regular local file to the peer, in blocking
// mode again (O_NONBLOCK means nothing for it). Other files stay here.
func (f *front) passFD(h string, file *os.File) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return nil
	}
	var fd int
	ok := false
	rc.Control(func(u uintptr) {
		fd = int(u)
		if FDFileOK(fd) != nil {
			return
		}
		if fl, err := fcntl(fd, syscall.F_GETFL, 0); err == nil {
			_, err = fcntl(fd, syscall.F_SETFL, fl&^syscall.O_NONBLOCK)
			ok = err == nil
		}
	})
	if !ok {
		return nil
	}
	pkt := binary.BigEndian.AppendUint32(nil, 0)
	pkt = append(pkt, fxpFD)
	pkt = appendStr(pkt, h)
	pkt = appendStr(pkt, file.Name())
	binary.BigEndian.PutUint32(pkt, uint32(len(pkt)-4))
	f.wmu.Lock()
	defer f.wmu.Unlock()
	var werr error
	rc.Control(func(u uintptr) {
		_, _, werr = f.uc.WriteMsgUnix(pkt, syscall.UnixRights(int(u)), nil)
	})
	return werr
}

func fcntl(fd, cmd, arg int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func (f *front) read(id uint32, file *os.File, off uint64, n uint32) ([]byte, int) {
	if off > 1<<62 {
		return appendStatus(f.out, id, syscall.EINVAL), 0
	}
	n = min(n, MaxPacket)
	out, start := beginPacket(f.out, fxpData, id)
	out = binary.BigEndian.AppendUint32(out, 0)
	hdr := len(out)
	out = append(out, make([]byte, n)...)
	got, err := file.ReadAt(out[hdr:], int64(off))
	if err != nil && (err != io.EOF || got == 0) {
		return appendStatus(out[:start], id, err), 0
	}
	HostBytes.Add(int64(got))
	out = out[:hdr+got]
	binary.BigEndian.PutUint32(out[hdr-4:], uint32(got))
	return endPacket(out, start), got
}

func fstat(file *os.File, st *syscall.Stat_t) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = syscall.Fstat(int(fd), st) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return &os.PathError{Op: "fstat", Path: file.Name(), Err: err}
	}
	return nil
}

// fsetstat applies what the client set, in pkg/sftp's order.
func fsetstat(file *os.File, a attrs) error {
	if a.flags&attrSize != 0 {
		if err := file.Truncate(int64(a.size)); err != nil {
			return err
		}
	}
	if a.flags&attrPerms != 0 {
		rc, err := file.SyscallConn()
		if err != nil {
			return err
		}
		rc.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), a.perms&0o7777) })
		if err != nil {
			return &os.PathError{Op: "chmod", Path: file.Name(), Err: err}
		}
	}
	if a.flags&attrUIDGID != 0 {
		if err := file.Chown(int(a.uid), int(a.gid)); err != nil {
			return err
		}
	}
	if a.flags&attrACMTime != 0 {
		if err := os.Chtimes(file.Name(), time.Unix(int64(a.atime), 0), time.Unix(int64(a.mtime), 0)); err != nil {
			return err
		}
	}
	return nil
}

// FDFileOK says whether fd may be served by another process with pread
// and pwrite: a regular file on a local filesystem. A FUSE or network
// file (NFS, CIFS, 9p, …) may block a read or write for as long as its
// server likes; it is served by the session host, as any other file.
func FDFileOK(fd int) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("not a regular file (mode %o)", st.Mode)
	}
	var fs syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &fs); err != nil {
		return err
	}
	if !localFS[uint64(fs.Type)] {
		return fmt.Errorf("filesystem type %#x is not one served by fd", fs.Type)
	}
	return nil
}

// localFS are the filesystems (statfs magic numbers) whose regular files
// do not block on another machine or process.
var localFS = map[uint64]bool{
	0xEF53:     true, // ext2/3/4
	0x58465342: true, // xfs
	0x9123683E: true, // btrfs
	0x01021994: true, // tmpfs
	0x858458F6: true, // ramfs
	0x794C7630: true, // overlayfs
	0xF2F52010: true, // f2fs
	0x2FC12FC1: true, // zfs
	0x4D44:     true, // vfat
	0x5346544E: true, // ntfs
	0x2011BAB0: true, // exfat
}

// packetWriter is pkg/sftp's server's output: it writes a packet in two
// or more writes, so it holds the front's lock from a packet's first byte
// to its last, and the front's answers go between packets, not inside one.
type packetWriter struct {
	f    *front
	hdr  []byte
	left int
}

func (w *packetWriter) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		if w.left == 0 {
			need := 4 - len(w.hdr)
			if len(b) < need {
				w.hdr = append(w.hdr, b...)
				return total, nil
			}
			w.hdr = append(w.hdr, b[:need]...)
			b = b[need:]
			w.left = int(binary.BigEndian.Uint32(w.hdr))
			w.f.wmu.Lock()
			_, err := w.f.uc.Write(w.hdr)
			w.hdr = w.hdr[:0]
			if err != nil || w.left == 0 {
				w.left = 0
				w.f.wmu.Unlock()
				if err != nil {
					return 0, err
				}
				continue
			}
		}
		n := min(len(b), w.left)
		_, err := w.f.uc.Write(b[:n])
		w.left -= n
		b = b[n:]
		if err != nil || w.left == 0 {
			w.left = 0
			w.f.wmu.Unlock()
			if err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

type pipeStream struct {
	io.Reader
	w  *packetWriter
	pr *io.PipeReader
}

func (s pipeStream) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s pipeStream) Close() error                { return s.pr.Close() }
