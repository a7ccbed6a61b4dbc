package journal

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    Record
	}{
		{"empty", Record{Seq: 1, Kind: KindStart}},
		{"stdout", Record{Seq: 42, Kind: KindStdout, Cmd: 7, Data: []byte("hello\n")}},
		{"max seq", Record{Seq: ^uint64(0), Kind: KindExit, Cmd: ^uint32(0), Data: []byte{0}}},
		{"max data", Record{Seq: 3, Kind: KindStderr, Data: payload(3, MaxDataBytes)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("xyz")
			b := AppendRecord(prefix, tt.r)
			if !bytes.Equal(b[:3], prefix) || len(b) != 3+EncodedSize(len(tt.r.Data)) {
				t.Fatalf("bad encoding length %d", len(b))
			}
			got, n, err := DecodeRecord(append(b[3:], "trailing"...))
			if err != nil {
				t.Fatal(err)
			}
			if n != EncodedSize(len(tt.r.Data)) {
				t.Errorf("n = %d", n)
			}
			if got.Seq != tt.r.Seq || got.Kind != tt.r.Kind || got.Cmd != tt.r.Cmd || !bytes.Equal(got.Data, tt.r.Data) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := AppendRecord(nil, Record{Seq: 9, Kind: KindStdout, Data: []byte("data")})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, ErrShortRecord},
		{"short header", good[:HeaderSize-1], ErrShortRecord},
		{"short data", good[:len(good)-1], ErrShortRecord},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 0; return b }), ErrBadMagic},
		{"too large", mod(func(b []byte) []byte { b[14] = 0xff; return b }), ErrTooLarge},
		{"bad crc data", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrBadCRC},
		{"bad crc header", mod(func(b []byte) []byte { b[7] ^= 1; return b }), ErrBadCRC},
		{"bad crc field", mod(func(b []byte) []byte { b[crcOff] ^= 1; return b }), ErrBadCRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := DecodeRecord(tt.b)
			if !errors.Is(err, tt.want) || n != 0 {
				t.Fatalf("got n=%d err=%v, want %v", n, err, tt.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"block", Block, false},
		{"drop", Drop, false},
		{" Drop ", Drop, false},
		{"BLOCK", Block, false},
		{"", 0, true},
		{"discard", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseMode(%q) = %v, %v", tt.in, got, err)
		}
		if !tt.wantErr && got.String() != tt.want.String() {
			t.Errorf("String mismatch")
		}
	}
	for _, m := range []Mode{Block, Drop} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%v.String()) = %v, %v", m, got, err)
		}
	}
}
