package chat

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Batches (pages answering a pull) may travel compressed in a binary
// WebSocket message: one codec byte, then the compressed JSON of the
// frame. Everything else is a text message holding one JSON frame.
// Compression is chosen by measurement (docs/benchmarks.md): zstd at its
// fastest level for the Go SDK, raw deflate for browsers, whose
// DecompressionStream has no zstd.
const (
	CodecZstd    byte = 1
	CodecDeflate byte = 2
)

// Codec names as clients ask for them in a pull frame.
const (
	CodecNameZstd    = "zstd"
	CodecNameDeflate = "deflate"
)

// CodecByName returns the codec byte of a name and whether it is known.
func CodecByName(name string) (byte, bool) {
	switch name {
	case CodecNameZstd:
		return CodecZstd, true
	case CodecNameDeflate:
		return CodecDeflate, true
	}
	return 0, false
}

// CompressMin is the size below which a batch is sent as plain text: a
// single small message does not shrink.
const CompressMin = 512

// MaxBatchBytes bounds a decompressed batch.
const MaxBatchBytes = 4 << 20

// Compressor compresses batches. One per server: it holds zstd encoder
// state shared by every batch, never a compressor per connection.
type Compressor struct {
	zstd  *zstd.Encoder
	flate sync.Pool
}

// NewCompressor returns a Compressor.
func NewCompressor() *Compressor {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(2), zstd.WithLowerEncoderMem(true), zstd.WithZeroFrames(true))
	if err != nil {
		panic(err) // only on invalid options
	}
	return &Compressor{zstd: enc, flate: sync.Pool{New: func() any {
		w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
		return w
	}}}
}

// Compress returns the binary message for an encoded frame: the codec
// byte and the compressed bytes. It is called once per batch, whatever
// the number of receivers. Safe for concurrent use.
func (c *Compressor) Compress(codec byte, frame []byte) ([]byte, error) {
	out := make([]byte, 1, len(frame)/3+16)
	out[0] = codec
	switch codec {
	case CodecZstd:
		return c.zstd.EncodeAll(frame, out), nil
	case CodecDeflate:
		buf := bytes.NewBuffer(out)
		w := c.flate.Get().(*flate.Writer)
		defer c.flate.Put(w)
		w.Reset(buf)
		if _, err := w.Write(frame); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("chat: unknown codec %d", codec)
}

// Decompressor opens binary messages. Safe for concurrent use.
type Decompressor struct {
	zstd *zstd.Decoder
}

// NewDecompressor returns a Decompressor.
func NewDecompressor() *Decompressor {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxBatchBytes), zstd.WithDecoderMaxWindow(1<<20))
	if err != nil {
		panic(err) // only on invalid options
	}
	return &Decompressor{zstd: dec}
}

// ErrBatch wraps every failure to decompress a binary message.
var ErrBatch = errors.New("chat: bad compressed batch")

// Decompress returns the JSON frame inside a binary message, refusing
// unknown codecs, corrupt data and anything that inflates past
// MaxBatchBytes.
func (d *Decompressor) Decompress(msg []byte) ([]byte, error) {
	if len(msg) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBatch, len(msg))
	}
	switch msg[0] {
	case CodecZstd:
		out, err := d.zstd.DecodeAll(msg[1:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBatch, err)
		}
		if len(out) > MaxBatchBytes {
			return nil, fmt.Errorf("%w: over %d bytes", ErrBatch, MaxBatchBytes)
		}
		return out, nil
	case CodecDeflate:
		r := flate.NewReader(bytes.NewReader(msg[1:]))
		defer r.Close()
		out, err := io.ReadAll(io.LimitReader(r, MaxBatchBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBatch, err)
		}
		if len(out) > MaxBatchBytes {
			return nil, fmt.Errorf("%w: over %d bytes", ErrBatch, MaxBatchBytes)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown codec %d", ErrBatch, msg[0])
}
