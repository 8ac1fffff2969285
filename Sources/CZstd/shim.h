#ifndef BOTRT_CZSTD_SHIM_H
#define BOTRT_CZSTD_SHIM_H
#include <zstd.h>
#include <zstd_errors.h>
#endif
