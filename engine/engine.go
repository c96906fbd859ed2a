// Package engine defines what clipd needs from a CLIP model: encoders that
// turn preprocessed images and token arrays into embeddings, implemented by
// the ONNX Runtime backend (engine/onnxrt) and the TensorRT backend (trt),
// and the zero-shot scoring that CLIP does with those embeddings.
package engine

// ImageEncoder turns batches of preprocessed images into embeddings.
type ImageEncoder interface {
	// EncodeImages takes n images packed as float32 NCHW, n*3*S*S values
	// with S = ImageSize(), and returns n unnormalized embeddings.
	EncodeImages(pixels []float32, n int) ([][]float32, error)
	// ImageSize is the side S of the square input.
	ImageSize() int
}

// TextEncoder turns batches of token arrays into embeddings.
type TextEncoder interface {
	// EncodeTexts takes token arrays of tokenizer.ContextLength ids each and returns
	// one unnormalized embedding per array.
	EncodeTexts(tokens [][]int32) ([][]float32, error)
}

// Encoder is a loaded model: both encoders plus facts about them.
type Encoder interface {
	ImageEncoder
	TextEncoder
	// EmbedDim is the length of every embedding.
	EmbedDim() int
	// Backend names the implementation, e.g. "onnxruntime" or "tensorrt".
	Backend() string
	Close() error
}
