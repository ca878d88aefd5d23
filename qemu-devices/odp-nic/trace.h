#include "trace/trace-hw_p2plab_odp_nic.h"
