#include <stddef.h>
#include <stdint.h>

// hist_dots scores n stored vectors against nq float32 queries. Vector i
// is the binary16 little-endian array of dim values at
// base + idx[i]*stride + voff. For each i it writes nq dot products and
// then the vector's squared norm: out[i*(nq+1) + j], j = 0..nq.
void hist_dots(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out);

// hist_dots_portable is the same without vector instructions; tests
// compare the two.
void hist_dots_portable(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out);

// hist_kernel prepares the loops and names the one hist_dots uses on this
// CPU; call it once before the others.
const char *hist_kernel(void);
