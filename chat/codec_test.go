package chat

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"testing"

	"github.com/klauspost/compress/s2"
)

// batch returns an encoded page of n lobby messages like players write.
func batch(n int) []byte {
	lines := []string{"anyone up for ranked?", "gg wp", "lf2m for the raid, need a healer", "lol", "who's hosting tonight",
		"lag spike again?", "invite me pls", "brb", "that last round was insane", "can someone explain the new patch"}
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Conv: "lobby:main", Seq: uint64(100000 + i), Kind: KindText, From: fmt.Sprintf("player%04d", i*37%997),
			ClientMsgID: fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15), Body: lines[i*7%len(lines)], TS: 1764000000000 + int64(i*13)}
	}
	b, _ := Encode(Frame{Type: TypePage, Ref: TypePull, Conv: "lobby:main", After: 99999, Messages: msgs})
	return b
}

func TestCompressRoundTripAndRatio(t *testing.T) {
	c, d := NewCompressor(), NewDecompressor()
	raw := batch(50)
	for _, codec := range []byte{CodecZstd, CodecDeflate} {
		z, err := c.Compress(codec, raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(z)*3 > len(raw) {
			t.Errorf("codec %d: a 50-message batch shrank only %d → %d bytes", codec, len(raw), len(z))
		}
		back, err := d.Decompress(z)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("codec %d: round trip failed: %v", codec, err)
		}
	}
}

func TestDecompressRefusesBadInput(t *testing.T) {
	d := NewDecompressor()
	var flated bytes.Buffer
	w, _ := flate.NewWriter(&flated, flate.BestCompression)
	_, _ = w.Write(make([]byte, MaxBatchBytes+1024)) // a bomb: 4 MB of zeros
	_ = w.Close()
	bomb := append([]byte{CodecDeflate}, flated.Bytes()...)
	zbomb, _ := NewCompressor().Compress(CodecZstd, make([]byte, MaxBatchBytes+1024))
	for name, msg := range map[string][]byte{
		"empty": {}, "unknown codec": {9, 1, 2, 3}, "corrupt zstd": {CodecZstd, 1, 2, 3, 4},
		"corrupt deflate": {CodecDeflate, 0xff, 0xff, 0xff}, "deflate bomb": bomb, "zstd bomb": zbomb,
	} {
		if _, err := d.Decompress(msg); !errors.Is(err, ErrBatch) {
			t.Errorf("%s: got %v, want ErrBatch", name, err)
		}
	}
	if _, ok := CodecByName("brotli"); ok {
		t.Fatal("unknown codec name accepted")
	}
}

func FuzzDecompress(f *testing.F) {
	c := NewCompressor()
	for _, codec := range []byte{CodecZstd, CodecDeflate} {
		z, _ := c.Compress(codec, batch(5))
		f.Add(z)
	}
	f.Add([]byte{CodecZstd})
	d := NewDecompressor()
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := d.Decompress(msg)
		if err == nil && len(out) > MaxBatchBytes {
			t.Fatalf("%d bytes out, limit %d", len(out), MaxBatchBytes)
		}
		if err == nil {
			_, _ = DecodeServer(out)
		}
	})
}

// BenchmarkCodec compares the candidate codecs on real chat batches; the
// ratio metric is compressed/raw.
func BenchmarkCodec(b *testing.B) {
	c := NewCompressor()
	codecs := map[string]func([]byte) []byte{
		"zstd-fastest": func(p []byte) []byte { z, _ := c.Compress(CodecZstd, p); return z },
		"deflate-1":    func(p []byte) []byte { z, _ := c.Compress(CodecDeflate, p); return z },
		"s2":           func(p []byte) []byte { return s2.Encode(nil, p) },
	}
	for _, n := range []int{1, 50, 200} {
		raw := batch(n)
		for _, name := range []string{"zstd-fastest", "deflate-1", "s2"} {
			fn := codecs[name]
			b.Run(fmt.Sprintf("%s/%dmsgs", name, n), func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				var z []byte
				for b.Loop() {
					z = fn(raw)
				}
				b.ReportMetric(float64(len(z))/float64(len(raw)), "ratio")
				b.ReportMetric(float64(len(raw)), "raw-bytes")
			})
		}
	}
}
