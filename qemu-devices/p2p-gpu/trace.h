#include "trace/trace-hw_p2plab_p2p_gpu.h"
