package onnxrt

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static void clipd_malloc_trim(void) { malloc_trim(0); }
#else
static void clipd_malloc_trim(void) {}
#endif
*/
import "C"

// releaseFreedMemory returns the C heap's free pages to the system.
// glibc raises its mmap threshold after the first large free, so the
// buffers ONNX Runtime frees while creating or destroying a session stay
// in the heap, counted in RSS, until something trims it. It is a no-op
// outside glibc.
func releaseFreedMemory() { C.clipd_malloc_trim() }
