/* Portable C variant: the reference every SIMD variant is tested against. */
#define CK_SUFFIX scalar
#include "nnet_impl.h"
